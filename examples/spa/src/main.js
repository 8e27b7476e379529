// Renders the page and, when served beside an API, shows what the API answered.
const root = document.getElementById("root");
root.textContent = "ProjectDeployer example app";
fetch("/api/").then((r) => r.json()).then((data) => {
  root.textContent = `ProjectDeployer example app - API says: ${JSON.stringify(data)}`;
}).catch(() => {});
