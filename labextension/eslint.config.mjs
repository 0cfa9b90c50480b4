import { config } from "../eslint.base.mjs";

// Built output, and the types generated from Python (not ours to style).
export default config(import.meta.dirname, ["node_modules/", "lib/", "src/generated/"]);
