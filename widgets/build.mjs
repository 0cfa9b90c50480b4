// Bundles each widget's ESM (and the CSS it imports) into the Python package's static folder.
// `node build.mjs` is the production build (minified) that wheels ship. `--watch` is the
// development loop (unminified, inline source maps, rebuilt on change; pair it with
// ANYWIDGET_HMR=1 in the kernel): run the production build again before building a wheel, as
// the build hook only rebuilds when widgets/ is newer than the bundle.
import * as esbuild from "esbuild";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const watch = process.argv.includes("--watch");
const production = !watch;

/** @type {import("esbuild").BuildOptions} */
const options = {
  absWorkingDir: here,
  // One entry per widget: the output is named after it (card.js + card.css).
  entryPoints: { card: "src/card.tsx", flow: "src/flow.tsx" },
  outdir: resolve(here, "../nstarx_jupyter/notebook/static"),
  bundle: true,
  format: "esm",
  target: "es2020",
  jsx: "automatic",
  minify: production,
  // anywidget loads the module from a string, so a separate .map file would not be found.
  sourcemap: production ? false : "inline",
  define: { "process.env.NODE_ENV": JSON.stringify(production ? "production" : "development") },
  logLevel: "info",
};

if (watch) {
  const context = await esbuild.context(options);
  await context.watch();
} else {
  await esbuild.build(options);
}
