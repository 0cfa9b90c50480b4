// The pipeline editor's data, as nstarx_jupyter.pipelines and the FlowEditor widget send it.

// The spec's own types come from Python (PipelineSpec → JSON Schema → TypeScript), never
// written twice: labextension/gen-types.mjs.
export type { EdgeSpec, NodeSpec, PipelineSpec, Position } from "../generated/pipeline";

export interface Port {
  name: string;
  type: string;
  many: boolean;
  required: boolean;
}

export interface NodePorts {
  inputs: Port[];
  outputs: Port[];
}

/** A palette entry (`Component.describe()`). */
export interface ComponentInfo extends NodePorts {
  name: string;
  kind: string;
  title: string;
  description: string;
  fittable: boolean;
  config_schema: JsonSchema;
}

/** A palette section, in the order a pipeline flows. */
export interface KindInfo {
  kind: string;
  title: string;
}

/** One mistake found by `validate()`, attached to a node, an edge or the whole pipeline. */
export interface Problem {
  target: "node" | "edge" | "pipeline";
  id: string | null;
  code: string;
  message: string;
}

/** For each input port type, the output port types it accepts. */
export type PortRules = Record<string, string[]>;

/** One node's part of a test run. */
export interface NodeRun {
  status?: string;
  ms?: number;
  rows_in?: number;
  rows_out?: number;
  error?: string | null;
  preview?: unknown;
}

export interface RunResult {
  output?: unknown;
  ms?: number;
  error?: string;
  node?: string | null;
  nodes?: Record<string, NodeRun>;
}

export interface VersionInfo {
  version: number | string;
  message: string;
  author?: string | null;
  created?: string;
}

export interface DeploymentInfo {
  name?: string;
  url?: string;
  key?: string | null;
  curl?: string;
}

/** The JSON Schema subset pydantic emits for component configs. */
export interface JsonSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  additionalProperties?: boolean | JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  minimum?: number;
  maximum?: number;
  pattern?: string;
}

/** What the toolbar asks the host to do; each resolves when the host has answered. */
export interface FlowActions {
  validate: () => Promise<void>;
  run: (sample: Record<string, unknown>) => Promise<void>;
  save: (message: string) => Promise<void>;
  listVersions: () => Promise<void>;
  load: (version: number | string) => Promise<void>;
  deploy: () => Promise<void>;
}

/** A value a form field suggests (a datalist option), with the text shown beside it. */
export interface Choice {
  value: string;
  label: string;
}

/** Suggested values of config fields, by field name (e.g. the model step's `model`). */
export type FieldChoices = Readonly<Record<string, readonly Choice[]>>;
