// The front ends' one eslint setup: typed strict rules, React hooks, no `any`. Each workspace's
// eslint.config.mjs calls `config()` with its folder and what it does not lint.
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";
import tseslint from "typescript-eslint";

export function config(dirname, ignores) {
  return defineConfig(
    { ignores },
    js.configs.recommended,
    {
      files: ["src/**/*.{ts,tsx}"],
      extends: [tseslint.configs.strictTypeChecked, tseslint.configs.stylisticTypeChecked],
      plugins: { "react-hooks": reactHooks },
      languageOptions: {
        globals: globals.browser,
        parserOptions: { projectService: true, tsconfigRootDir: dirname },
      },
      rules: {
        ...reactHooks.configs.recommended.rules,
        "@typescript-eslint/no-explicit-any": "error",
      },
    },
    { files: ["*.mjs", "style/*.js"], languageOptions: { globals: globals.node } },
  );
}
