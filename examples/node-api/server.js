// A tiny JSON API on Node's http module (no dependencies: builds with no npm registry).
const http = require("http");
const port = Number(process.env.PORT || 3000);
const version = process.env.APP_VERSION || "1";

const server = http.createServer((req, res) => {
  const send = (status, body) => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (req.url === "/health") return send(200, { ok: true });
  if (req.url === "/") return send(200, { service: "node-api", version, node: process.version });
  return send(404, { error: "not found" });
});

server.listen(port, "0.0.0.0", () => console.log(`node-api ${version} listening on ${port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
