// A dependency-free "bundler": copies src/ to build/, fingerprinting the JS and CSS like
// create-react-app and Vite do (main.<hash>.js), so nginx's immutable caching applies.
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");

const src = path.join(__dirname, "src");
const out = path.join(__dirname, "build");
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(path.join(out, "static"), { recursive: true });

const names = {};
for (const file of ["main.js", "main.css"]) {
  const body = fs.readFileSync(path.join(src, file));
  const hash = crypto.createHash("sha256").update(body).digest("hex").slice(0, 8);
  const [base, ext] = file.split(".");
  names[file] = `static/${base}.${hash}.${ext}`;
  fs.writeFileSync(path.join(out, names[file]), body);
}
let html = fs.readFileSync(path.join(src, "index.html"), "utf8");
for (const [file, hashed] of Object.entries(names)) html = html.replace(`/${file}`, `/${hashed}`);
fs.writeFileSync(path.join(out, "index.html"), html);
console.log("built", Object.values(names).join(", "));
