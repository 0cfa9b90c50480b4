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

/** Which way a layout runs: left to right, or top down (ports on the nodes' sides to match). */
export type Direction = "LR" | "TB";

/** Below this zoom a node's text is too small to read: fitting stops there, the user scrolls. */
export const READABLE_ZOOM = 0.7;

/** Positions from a layered layout (dagre), top-left corners as React Flow wants. */
export function autoLayout(
  nodes: readonly StepNode[],
  edges: readonly PipeEdge[],
  direction: Direction = "LR",
): StepNode[] {
  const graph = new Graph<object, Box, object>();
  graph.setGraph({ rankdir: direction, nodesep: direction === "LR" ? 30 : 40,
                   ranksep: direction === "LR" ? 80 : 50, marginx: 20, marginy: 20 }); // prettier-ignore
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

/** Whether nobody has placed the nodes: two or more, all at one point (code adds them at 0,0). */
export function isUnplaced(nodes: readonly StepNode[]): boolean {
  const [first] = nodes;
  if (first === undefined || nodes.length < 2) return false;
  return nodes.every(
    (node) => node.position.x === first.position.x && node.position.y === first.position.y,
  );
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** The box around the nodes (unmeasured ones at NODE_SIZE). */
export function boundsOf(nodes: readonly StepNode[]): Rect {
  if (nodes.length === 0) return { x: 0, y: 0, width: 0, height: 0 };
  const lefts = nodes.map((node) => node.position.x);
  const tops = nodes.map((node) => node.position.y);
  const rights = nodes.map((n) => n.position.x + (n.measured?.width ?? NODE_SIZE.width));
  const bottoms = nodes.map((n) => n.position.y + (n.measured?.height ?? NODE_SIZE.height));
  const [x, y] = [Math.min(...lefts), Math.min(...tops)];
  return { x, y, width: Math.max(...rights) - x, height: Math.max(...bottoms) - y };
}

/** The zoom at which `bounds` fills `view` (with `padding` as a fraction of it). */
export function fitZoom(bounds: Rect, view: { width: number; height: number }, padding = 0.1) {
  if (bounds.width <= 0 || bounds.height <= 0 || view.width <= 0 || view.height <= 0) return 1;
  const scale = 1 - 2 * padding;
  return Math.min((view.width * scale) / bounds.width, (view.height * scale) / bounds.height);
}

/** The layered layout in the direction that shows the pipeline larger in `view`; left to right
 * when both fit at full size (or the view's size is not known yet). */
export function bestLayout(
  nodes: readonly StepNode[],
  edges: readonly PipeEdge[],
  view: { width: number; height: number },
): { nodes: StepNode[]; direction: Direction } {
  const down = autoLayout(nodes, edges, "TB");
  const across = autoLayout(nodes, edges, "LR");
  const zoomDown = Math.min(1, fitZoom(boundsOf(down), view));
  const zoomAcross = Math.min(1, fitZoom(boundsOf(across), view));
  return zoomDown > zoomAcross
    ? { nodes: down, direction: "TB" }
    : { nodes: across, direction: "LR" };
}

/** Nodes as the canvas first shows them: laid out in the best direction for `view` when nobody
 * has placed them, else where they are (in the direction their edges run). */
export function place(
  nodes: readonly StepNode[],
  edges: readonly PipeEdge[],
  view: { width: number; height: number },
): { nodes: StepNode[]; direction: Direction; laidOut: boolean } {
  if (isUnplaced(nodes)) return { ...bestLayout(nodes, edges, view), laidOut: true };
  return { nodes: [...nodes], direction: directionOf(nodes, edges), laidOut: false };
}

/** The direction placed nodes run in: top down when most edges go more down than across. */
export function directionOf(nodes: readonly StepNode[], edges: readonly PipeEdge[]): Direction {
  const at = new Map(nodes.map((node) => [node.id, node.position]));
  let down = 0;
  for (const edge of edges) {
    const [from, to] = [at.get(edge.source), at.get(edge.target)];
    if (from && to) down += Math.abs(to.y - from.y) > Math.abs(to.x - from.x) ? 1 : -1;
  }
  return down > 0 ? "TB" : "LR";
}

export interface Viewport {
  x: number;
  y: number;
  zoom: number;
}

/** Fit `bounds` into `view`, but never below READABLE_ZOOM nor above `maxZoom`: a pipeline too
 * big to read whole is shown from its start (top left), centred along any axis it fits in. */
export function readableViewport(
  bounds: Rect,
  view: { width: number; height: number },
  { maxZoom = 1, padding = 0.08 }: { maxZoom?: number; padding?: number } = {},
): Viewport {
  const zoom = Math.max(READABLE_ZOOM, Math.min(maxZoom, fitZoom(bounds, view, padding)));
  const place = (start: number, size: number, room: number) => {
    const drawn = size * zoom;
    const margin = room * padding;
    return drawn + 2 * margin <= room ? (room - drawn) / 2 - start * zoom : margin - start * zoom;
  };
  return {
    x: place(bounds.x, bounds.width, view.width),
    y: place(bounds.y, bounds.height, view.height),
    zoom,
  };
}
