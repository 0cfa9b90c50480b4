// esbuild bundles the CSS a widget imports into <widget>.css.
declare module "*.css";
