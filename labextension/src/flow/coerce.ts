// What arrives from outside (a widget model, a file) checked into the editor's types: a
// malformed part is dropped or replaced by an empty value rather than trusted.
import type {
  ComponentInfo,
  DeploymentInfo,
  EdgeSpec,
  KindInfo,
  NodePorts,
  NodeSpec,
  PipelineSpec,
  Port,
  PortRules,
  Problem,
  RunResult,
  VersionInfo,
} from "./types";

type Json = Record<string, unknown>;

export function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function text(value: unknown, fallback = ""): string {
  return typeof value === "string" ? value : fallback;
}

function number(value: unknown, fallback = 0): number {
  return typeof value === "number" && Number.isFinite(value) ? value : fallback;
}

function list<T>(value: unknown, item: (entry: unknown) => T | null): T[] {
  if (!Array.isArray(value)) return [];
  return value.map(item).filter((entry): entry is T => entry !== null);
}

function node(value: unknown): NodeSpec | null {
  if (!isRecord(value) || typeof value.id !== "string") return null;
  const position = isRecord(value.position) ? value.position : {};
  return {
    id: value.id,
    component: text(value.component),
    config: isRecord(value.config) ? value.config : {},
    label: typeof value.label === "string" ? value.label : null,
    position: { x: number(position.x), y: number(position.y) },
  };
}

function edge(value: unknown): EdgeSpec | null {
  if (!isRecord(value) || typeof value.id !== "string") return null;
  return {
    id: value.id,
    source: text(value.source),
    source_port: text(value.source_port, "out"),
    target: text(value.target),
    target_port: text(value.target_port, "in"),
  };
}

export function toPipelineSpec(value: unknown): PipelineSpec {
  const doc = isRecord(value) ? value : {};
  return {
    ...doc,
    schema_version: 1,
    name: text(doc.name),
    description: text(doc.description),
    nodes: list(doc.nodes, node),
    edges: list(doc.edges, edge),
  };
}

function port(value: unknown): Port | null {
  if (!isRecord(value) || typeof value.name !== "string") return null;
  return {
    name: value.name,
    type: text(value.type, "any"),
    many: value.many === true,
    required: value.required !== false,
  };
}

function ports(value: unknown): NodePorts {
  const doc = isRecord(value) ? value : {};
  return { inputs: list(doc.inputs, port), outputs: list(doc.outputs, port) };
}

export function toLibrary(value: unknown): ComponentInfo[] {
  return list(value, (entry) => {
    if (!isRecord(entry) || typeof entry.name !== "string") return null;
    return {
      ...ports(entry),
      name: entry.name,
      kind: text(entry.kind),
      title: text(entry.title, entry.name),
      description: text(entry.description),
      fittable: entry.fittable === true,
      config_schema: isRecord(entry.config_schema) ? entry.config_schema : {},
    };
  });
}

export function toKinds(value: unknown): KindInfo[] {
  return list(value, (entry) =>
    isRecord(entry) && typeof entry.kind === "string"
      ? { kind: entry.kind, title: text(entry.title, entry.kind) }
      : null,
  );
}

export function toPortRules(value: unknown): PortRules {
  if (!isRecord(value)) return {};
  return Object.fromEntries(
    Object.entries(value).map(([wanted, given]) => [
      wanted,
      list(given, (entry) => (typeof entry === "string" ? entry : null)),
    ]),
  );
}

export function toNodePorts(value: unknown): Record<string, NodePorts> {
  if (!isRecord(value)) return {};
  return Object.fromEntries(Object.entries(value).map(([id, entry]) => [id, ports(entry)]));
}

const TARGETS = new Set(["node", "edge", "pipeline"]);

export function toProblems(value: unknown): Problem[] {
  return list(value, (entry) => {
    if (!isRecord(entry)) return null;
    const target = entry.target;
    if (target !== "node" && target !== "edge" && target !== "pipeline") return null;
    if (!TARGETS.has(target)) return null;
    return {
      target,
      id: typeof entry.id === "string" ? entry.id : null,
      code: text(entry.code),
      message: text(entry.message),
    };
  });
}

export function toRunResult(value: unknown): RunResult | null {
  if (!isRecord(value) || Object.keys(value).length === 0) return null;
  const nodes = isRecord(value.nodes) ? value.nodes : {};
  return {
    output: value.output,
    ms: typeof value.ms === "number" ? value.ms : undefined,
    error: typeof value.error === "string" ? value.error : undefined,
    node: typeof value.node === "string" ? value.node : null,
    nodes: Object.fromEntries(
      Object.entries(nodes)
        .filter((entry): entry is [string, Json] => isRecord(entry[1]))
        .map(([id, run]) => [
          id,
          {
            status: typeof run.status === "string" ? run.status : undefined,
            ms: typeof run.ms === "number" ? run.ms : undefined,
            rows_in: typeof run.rows_in === "number" ? run.rows_in : undefined,
            rows_out: typeof run.rows_out === "number" ? run.rows_out : undefined,
            error: typeof run.error === "string" ? run.error : null,
            preview: run.preview,
          },
        ]),
    ),
  };
}

export function toVersions(value: unknown): VersionInfo[] {
  return list(value, (entry) => {
    if (!isRecord(entry)) return null;
    const version = entry.version;
    if (typeof version !== "number" && typeof version !== "string") return null;
    return {
      version,
      message: text(entry.message),
      author: typeof entry.author === "string" ? entry.author : null,
      created: text(entry.created),
    };
  });
}

export function toDeployment(value: unknown): DeploymentInfo | null {
  if (!isRecord(value) || Object.keys(value).length === 0) return null;
  return {
    name: text(value.name),
    url: text(value.url),
    key: typeof value.key === "string" ? value.key : null,
    curl: text(value.curl),
  };
}

export function toRecord(value: unknown): Json {
  return isRecord(value) ? value : {};
}
