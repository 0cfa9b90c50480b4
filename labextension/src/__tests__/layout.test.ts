// The first display of a pipeline built in code (nodes without positions): laid out in layers,
// the router's branches side by side, at a zoom whose text can be read.
import { describe, expect, it } from "vitest";
import {
  READABLE_ZOOM,
  bestLayout,
  boundsOf,
  directionOf,
  isUnplaced,
  readableViewport,
  toFlowEdge,
  toFlowNode,
  type StepNode,
} from "../flow/graph";
import type { EdgeSpec, NodeSpec } from "../flow/types";

// notebooks/02-pipelines.ipynb's fraud detector, as `Pipeline.add` leaves it: no positions.
const IDS = [
  "check",
  "fill",
  "odd",
  "route",
  "lr",
  "lr-large",
  "rf",
  "combine",
  "decide",
  "answer",
];
const NODES: NodeSpec[] = IDS.map((id) => ({
  id,
  component: "x",
  config: {},
  label: null,
  position: { x: 0, y: 0 },
}));
const LINKS: [string, string, string?][] = [
  ["check", "fill"],
  ["fill", "odd"],
  ["odd", "route"],
  ["route", "rf", "large"],
  ["route", "lr-large", "large"],
  ["route", "lr", "default"],
  ["lr", "combine"],
  ["lr-large", "combine"],
  ["rf", "combine"],
  ["combine", "decide"],
  ["decide", "answer"],
];
const EDGES: EdgeSpec[] = LINKS.map(([source, target, port], i) => ({
  id: `e${String(i)}`,
  source,
  source_port: port ?? "out",
  target,
  target_port: "in",
}));
// The canvas of FlowEditor(pipe) in a notebook: 600 px high less the toolbar, between the
// palette (180 px) and the side panel (300 px).
const CANVAS = { width: 700, height: 560 };

function byId(nodes: StepNode[]) {
  return Object.fromEntries(nodes.map((node) => [node.id, node.position]));
}

describe("a pipeline without positions", () => {
  const nodes = NODES.map(toFlowNode);
  const edges = EDGES.map(toFlowEdge);

  it("is recognised as unplaced (and a placed one is not)", () => {
    expect(isUnplaced(nodes)).toBe(true);
    expect(isUnplaced(bestLayout(nodes, edges, CANVAS).nodes)).toBe(false);
    expect(isUnplaced(nodes.slice(0, 1))).toBe(false);
  });

  it("is laid out top down in a notebook's canvas, one layer per step", () => {
    const { nodes: laid, direction } = bestLayout(nodes, edges, CANVAS);
    expect(direction).toBe("TB");
    const at = byId(laid);
    const chain = ["check", "fill", "odd", "route", "lr", "combine", "decide", "answer"];
    for (let i = 1; i < chain.length; i++) {
      expect(at[chain[i] ?? ""]?.y).toBeGreaterThan(at[chain[i - 1] ?? ""]?.y ?? Infinity);
    }
    expect(directionOf(laid, edges)).toBe("TB");
  });

  it("puts the router's branches side by side, not in one row with the chain", () => {
    const at = byId(bestLayout(nodes, edges, CANVAS).nodes);
    const branches = ["lr", "lr-large", "rf"].map((id) => at[id]);
    expect(new Set(branches.map((p) => p?.y)).size).toBe(1); // one layer
    expect(new Set(branches.map((p) => p?.x)).size).toBe(3); // three columns
    const rows = new Set(Object.values(at).map((p) => p.y));
    expect(rows.size).toBe(8); // not one row: eight layers
  });

  it("runs left to right in a wide, low canvas", () => {
    const { direction, nodes: laid } = bestLayout(nodes, edges, { width: 3000, height: 400 });
    expect(direction).toBe("LR");
    expect(directionOf(laid, edges)).toBe("LR");
  });

  it("is shown at a readable zoom from its start, not fitted to a speck", () => {
    const laid = bestLayout(nodes, edges, CANVAS).nodes;
    const bounds = boundsOf(laid);
    const view = readableViewport(bounds, CANVAS);
    expect(view.zoom).toBeGreaterThanOrEqual(READABLE_ZOOM);
    // the first step is in view, at the top
    const top = bounds.y * view.zoom + view.y;
    expect(top).toBeGreaterThanOrEqual(0);
    expect(top).toBeLessThan(CANVAS.height / 4);
    // a long left-to-right row is not shrunk below the readable zoom either
    const row = readableViewport({ x: 0, y: 0, width: 2600, height: 64 }, CANVAS);
    expect(row.zoom).toBe(READABLE_ZOOM);
    expect(row.x).toBeGreaterThan(0); // starts at its left end
  });

  it("small pipelines are centred, not blown up", () => {
    const view = readableViewport({ x: 0, y: 0, width: 200, height: 64 }, CANVAS);
    expect(view.zoom).toBe(1);
    expect(view.x).toBeCloseTo((CANVAS.width - 200) / 2);
  });
});

describe("a small pipeline", () => {
  it("stays left to right when it fits either way", () => {
    const nodes = NODES.slice(0, 2).map(toFlowNode);
    const edges = EDGES.slice(0, 1).map(toFlowEdge);
    expect(bestLayout(nodes, edges, CANVAS).direction).toBe("LR");
    expect(bestLayout(nodes, edges, { width: 0, height: 0 }).direction).toBe("LR");
  });
});
