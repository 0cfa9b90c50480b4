// Builds the prebuilt lab extension (lib/ -> ../nstarx_jupyter/labextension) with node alone.
// `jupyter labextension build` would need JupyterLab's Python package at build time, and its
// jupyter-builder looks the core package up online; @jupyterlab/core-meta carries the same
// core.package.json, which @jupyterlab/builder reads as <core-path>/package.json.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outputDir = () =>
  JSON.parse(readFileSync(join(here, "package.json"), "utf8")).jupyterlab.outputDir;
const require = createRequire(import.meta.url);
const core = mkdtempSync(join(tmpdir(), "nstarx-core-"));
try {
  copyFileSync(
    require.resolve("@jupyterlab/core-meta/core.package.json"),
    join(core, "package.json"),
  );
  const builder = require.resolve("@jupyterlab/builder/lib/build-labextension.js");
  const args = [builder, "--core-path", core, ...process.argv.slice(2), here];
  const { status } = spawnSync(process.execPath, args, { stdio: "inherit" });
  if (status === 0) {
    // install.json (how JupyterLab says the extension was installed) travels with the build,
    // so the wheel maps one folder; a second mapping of the file alone broke `pip install -e`
    // once `make lab-dev` had linked the folder into the venv (pip writes through the link).
    copyFileSync(join(here, "..", "install.json"), join(here, outputDir(), "install.json"));
  }
  process.exitCode = status ?? 1;
} finally {
  rmSync(core, { recursive: true, force: true });
}
