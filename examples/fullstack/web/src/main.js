// Shows what the API answers (through the same sidecar, at the API's own domain).
const root = document.getElementById("root");
const api = window.location.origin.replace("//www.", "//api.");
root.textContent = "ProjectDeployer full-stack example";
fetch(api + "/").then((r) => r.json()).then((data) => {
  root.textContent = `ProjectDeployer full-stack example - the API says: ${data.greeting} (visit ${data.visits})`;
}).catch(() => {});
