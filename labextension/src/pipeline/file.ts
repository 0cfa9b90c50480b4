// A `*.pipeline.json` file: its text <-> the editor's PipelineSpec.
import { toPipelineSpec } from "../flow/coerce";
import type { PipelineSpec } from "../flow/types";

/** What the file type is called, and the extension it claims. */
export const FILE_TYPE = "nstarx-pipeline";
export const EXTENSION = ".pipeline.json";
/** The `schema_version` this editor writes (Python's `PipelineSpec.schema_version`). */
export const SCHEMA_VERSION = 1;

/** A pipeline name (`[a-z0-9-]`, as KServe names are) from a file name. */
export function nameFromPath(path: string): string {
  const base = path.split("/").pop() ?? "pipeline";
  const stem = base.endsWith(EXTENSION) ? base.slice(0, -EXTENSION.length) : base;
  const name = stem
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^[^a-z]+/, "")
    .replace(/-+$/, "")
    .slice(0, 63);
  return name || "pipeline";
}

/** The text of a new, empty pipeline. */
export function starterText(path: string): string {
  const spec: PipelineSpec = {
    schema_version: SCHEMA_VERSION,
    name: nameFromPath(path),
    description: "",
    nodes: [],
    edges: [],
  };
  return serialize(spec);
}

/** The file's text as a spec, or why it cannot be one. */
export function parse(text: string): { spec: PipelineSpec } | { error: string } {
  if (!text.trim()) return { error: "The file is empty." };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    return { error: `The file is not valid JSON: ${String(error)}` };
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return { error: "The file must hold one JSON object (a pipeline)." };
  }
  const version = (doc as Record<string, unknown>).schema_version ?? SCHEMA_VERSION;
  if (typeof version !== "number" || version > SCHEMA_VERSION) {
    return {
      error: `The file's schema_version ${JSON.stringify(version)} is newer than this editor's (${String(SCHEMA_VERSION)}): update nstarx-jupyter.`,
    };
  }
  return { spec: toPipelineSpec(doc) };
}

/** The stable text written to the file: 2-space JSON and a final newline, as Python writes it. */
export function serialize(spec: PipelineSpec): string {
  return JSON.stringify(spec, null, 2) + "\n";
}
