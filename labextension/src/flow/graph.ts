// Pure pipeline ↔ React Flow conversions and the canvas's graph rules (ids, connections,
// copy and paste, auto layout): no React, no host, so they are easy to test and to reuse.
import { Graph, layout } from "@dagrejs/dagre";
import type { Connection, Edge, Node } from "@xyflow/react";
import type { EdgeSpec, NodePorts, NodeSpec, PipelineSpec, Port, PortRules } from "./types";

export interface StepData extends Record<string, unknown> {
  component: string;
  config: Record<string, unknown>;
  label: string | null;
}

export type StepNode = Node<StepData, "step">;
export type PipeEdge = Edge<Record<string, unknown>, "pipe">;

/** What a node looks like before it has been measured (for layout and centring). */
export const NODE_SIZE = { width: 200, height: 64 };
const ID_MAX = 64;
const PASTE_OFFSET = 40;

export function toFlowNode(node: NodeSpec): StepNode {
  return {
    id: node.id,
    type: "step",
    position: { x: node.position.x, y: node.position.y },
    data: { component: node.component, config: node.config, label: node.label ?? null },
  };
}

export function toFlowEdge(edge: EdgeSpec): PipeEdge {
  return {
    id: edge.id,
    type: "pipe",
    source: edge.source,
    sourceHandle: edge.source_port,
    target: edge.target,
    targetHandle: edge.target_port,
  };
}

/** The spec of what the canvas shows, without React Flow's own fields (measured, selected...). */
export function toSpec(base: PipelineSpec, nodes: StepNode[], edges: PipeEdge[]): PipelineSpec {
  return {
    ...base,
    nodes: nodes.map((node) => ({
      id: node.id,
      component: node.data.component,
      config: node.data.config,
      label: node.data.label,
      position: { x: round(node.position.x), y: round(node.position.y) },
    })),
    edges: edges.map((edge) => ({
      id: edge.id,
      source: edge.source,
      source_port: edge.sourceHandle ?? "out",
      target: edge.target,
      target_port: edge.targetHandle ?? "in",
    })),
  };
}

/** The spec in one canonical form: the same pipeline always gives the same text. */
export function canonical(spec: PipelineSpec): string {
  return JSON.stringify(
    toSpec(spec, spec.nodes.map(toFlowNode), spec.edges.map(toFlowEdge)),
    (_key, value: unknown) =>
      value !== null && typeof value === "object" && !Array.isArray(value)
        ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)))
        : value,
  );
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

/** Characters left as they are in ids; anything else becomes `_`. */
function sanitise(text: string): string {
  return text.replace(/[^A-Za-z0-9_.:-]/g, "_");
}

/** `text` made a valid id (`[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}`) not in `taken`. */
function uniqueId(text: string, taken: ReadonlySet<string>): string {
  let base =
    sanitise(text)
      .replace(/^[.:-]/, "_")
      .slice(0, ID_MAX - 4) || "_";
  if (!taken.has(base)) return base;
  base = base.slice(0, ID_MAX - 8);
  for (let n = 2; ; n++) {
    const candidate = `${base}-${String(n)}`;
    if (!taken.has(candidate)) return candidate;
  }
}

/** `${component}-${n}` with the smallest n not taken. */
export function newNodeId(component: string, taken: ReadonlySet<string>): string {
  const base = sanitise(component).slice(0, ID_MAX - 8);
  for (let n = 1; ; n++) {
    const candidate = `${base}-${String(n)}`;
    if (!taken.has(candidate)) return candidate;
  }
}

export function newEdgeId(
  source: string,
  sourcePort: string,
  target: string,
  targetPort: string,
  taken: ReadonlySet<string>,
): string {
  return uniqueId(`e-${source}.${sourcePort}-${target}.${targetPort}`, taken);
}

/** Whether the pipeline's rules allow `connection`: typed ports, no loop onto itself, no twin. */
export function canConnect(
  connection: Connection | PipeEdge,
  portsOf: (nodeId: string) => NodePorts | undefined,
  rules: PortRules,
  edges: readonly PipeEdge[],
): boolean {
  const { source, target, sourceHandle, targetHandle } = connection;
  if (source === target) return false;
  const out = findPort(portsOf(source)?.outputs, sourceHandle);
  const into = findPort(portsOf(target)?.inputs, targetHandle);
  if (!out || !into) return false;
  if (!(rules[into.type] ?? []).includes(out.type)) return false;
  return !edges.some(
    (edge) =>
      edge.source === source &&
      edge.target === target &&
      (edge.sourceHandle ?? null) === (sourceHandle ?? null) &&
      (edge.targetHandle ?? null) === (targetHandle ?? null),
  );
}

function findPort(ports: Port[] | undefined, name: string | null | undefined): Port | undefined {
  if (!ports) return undefined;
  return name ? ports.find((port) => port.name === name) : ports[0];
}

/** Selected nodes and the edges between them: what Ctrl+C keeps. */
export interface Clip {
  nodes: StepNode[];
  edges: PipeEdge[];
}

export function copySelection(nodes: readonly StepNode[], edges: readonly PipeEdge[]): Clip {
  const chosen = nodes.filter((node) => node.selected);
  const ids = new Set(chosen.map((node) => node.id));
  return {
    nodes: chosen,
    edges: edges.filter((edge) => ids.has(edge.source) && ids.has(edge.target)),
  };
}

/** The clip's nodes and edges with new ids, shifted, selected: what Ctrl+V adds. */
export function pasteClip(
  clip: Clip,
  nodes: readonly StepNode[],
  edges: readonly PipeEdge[],
): Clip {
  const nodeIds = new Set(nodes.map((node) => node.id));
  const edgeIds = new Set(edges.map((edge) => edge.id));
  const renamed = new Map<string, string>();
  const pasted = clip.nodes.map((node) => {
    const id = newNodeId(node.data.component, nodeIds);
    nodeIds.add(id);
    renamed.set(node.id, id);
    return {
      id,
      type: "step" as const,
      position: { x: node.position.x + PASTE_OFFSET, y: node.position.y + PASTE_OFFSET },
      data: { ...node.data, config: structuredClone(node.data.config) },
      selected: true,
    };
  });
  const links = clip.edges.flatMap((edge) => {
    const source = renamed.get(edge.source);
    const target = renamed.get(edge.target);
    if (source === undefined || target === undefined) return [];
    const sourcePort = edge.sourceHandle ?? "out";
    const targetPort = edge.targetHandle ?? "in";
    const id = newEdgeId(source, sourcePort, target, targetPort, edgeIds);
    edgeIds.add(id);
    return [toFlowEdge({ id, source, source_port: sourcePort, target, target_port: targetPort })];
  });
  return { nodes: pasted, edges: links };
}

interface Box {
  width: number;
  height: number;
  x?: number;
  y?: number;
}

/** Positions from a left-to-right layered layout (dagre), top-left corners as React Flow wants. */
export function autoLayout(nodes: readonly StepNode[], edges: readonly PipeEdge[]): StepNode[] {
  const graph = new Graph<object, Box, object>();
  graph.setGraph({ rankdir: "LR", nodesep: 30, ranksep: 80, marginx: 20, marginy: 20 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const node of nodes) {
    graph.setNode(node.id, {
      width: node.measured?.width ?? NODE_SIZE.width,
      height: node.measured?.height ?? NODE_SIZE.height,
    });
  }
  for (const edge of edges) graph.setEdge(edge.source, edge.target);
  layout(graph);
  return nodes.map((node) => {
    const placed = graph.node(node.id);
    const x = (placed.x ?? 0) - placed.width / 2;
    const y = (placed.y ?? 0) - placed.height / 2;
    return { ...node, position: { x, y } };
  });
}
