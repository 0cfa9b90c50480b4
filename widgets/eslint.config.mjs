import { config } from "../eslint.base.mjs";

export default config(import.meta.dirname, ["node_modules/"]);
