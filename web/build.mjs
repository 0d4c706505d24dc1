// `make web`: bundle src/app.js with the locked mqtt client into dist/app.js and write dist/index.html with the
// stylesheet inlined (Mosquitto's http_dir sends no Content-Type, so the page is one HTML file and one script).
import { build } from "esbuild";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/app.js"], bundle: true, minify: true, format: "iife", target: "es2019",
  platform: "browser", outfile: "dist/app.js", legalComments: "linked", logLevel: "warning",
});
const css = readFileSync("src/style.css", "utf8");
const html = readFileSync("src/index.html", "utf8").replace("/*STYLE*/", () => css);
writeFileSync("dist/index.html", html);
