import { describe, expect, it } from "vitest";
import {
  autoLayout,
  canConnect,
  canonical,
  copySelection,
  newEdgeId,
  newNodeId,
  pasteClip,
  toFlowEdge,
  toFlowNode,
  toSpec,
  type PipeEdge,
} from "../flow/graph";
import type { NodePorts, PipelineSpec, PortRules } from "../flow/types";

const SPEC: PipelineSpec = {
  schema_version: 1,
  name: "p",
  description: "",
  nodes: [
    {
      id: "in",
      component: "validate",
      config: { b: 1, a: 2 },
      label: null,
      position: { x: 0, y: 0 },
    },
    { id: "m", component: "model", config: {}, label: "score", position: { x: 10.04, y: 5 } },
  ],
  edges: [{ id: "e1", source: "in", source_port: "out", target: "m", target_port: "in" }],
};

const PORTS: Record<string, NodePorts> = {
  in: { inputs: [], outputs: [{ name: "out", type: "records", many: false, required: true }] },
  m: {
    inputs: [{ name: "in", type: "records", many: false, required: true }],
    outputs: [{ name: "out", type: "predictions", many: false, required: true }],
  },
};
const RULES: PortRules = { records: ["records"], predictions: ["predictions", "records"] };
const portsOf = (id: string) => PORTS[id];

describe("a spec on the canvas and back", () => {
  it("keeps every field, positions rounded to 0.1", () => {
    const back = toSpec(SPEC, SPEC.nodes.map(toFlowNode), SPEC.edges.map(toFlowEdge));
    expect(back.nodes[1]?.position).toEqual({ x: 10, y: 5 });
    expect(back.edges).toEqual(SPEC.edges);
    expect(back.nodes[1]?.label).toBe("score");
  });

  it("has one canonical text whatever the order of its keys", () => {
    const shuffled = JSON.parse(
      JSON.stringify({
        edges: SPEC.edges,
        nodes: SPEC.nodes,
        name: "p",
        schema_version: 1,
        description: "",
      }),
    ) as PipelineSpec;
    expect(canonical(shuffled)).toBe(canonical(SPEC));
  });
});

describe("ids", () => {
  it("of a new node take the smallest free number", () => {
    expect(newNodeId("model", new Set(["model-1", "model-3"]))).toBe("model-2");
    expect(newNodeId("my step!", new Set())).toBe("my_step_-1");
  });

  it("of a new edge are unique and valid", () => {
    const first = newEdgeId("a", "out", "b", "in", new Set());
    expect(newEdgeId("a", "out", "b", "in", new Set([first]))).toBe(`${first}-2`);
    expect(newEdgeId("x".repeat(90), "out", "b", "in", new Set())).toMatch(
      /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/,
    );
  });
});

describe("a connection", () => {
  const edges = SPEC.edges.map(toFlowEdge);
  const link = (source: string, target: string): PipeEdge => ({
    id: "new",
    source,
    target,
    sourceHandle: "out",
    targetHandle: "in",
  });

  it("is allowed between ports whose types the rules accept", () => {
    expect(canConnect(link("in", "m"), portsOf, RULES, [])).toBe(true);
  });

  it("is refused onto itself, twice, or between unknown or mismatched ports", () => {
    expect(canConnect(link("m", "m"), portsOf, RULES, [])).toBe(false);
    expect(canConnect(link("in", "m"), portsOf, RULES, edges)).toBe(false);
    expect(canConnect(link("in", "nowhere"), portsOf, RULES, [])).toBe(false);
    expect(canConnect(link("m", "m"), portsOf, { records: [] }, [])).toBe(false);
    expect(canConnect(link("in", "m"), portsOf, { records: ["predictions"] }, [])).toBe(false);
  });
});

describe("copy and paste", () => {
  it("copies the selected nodes and the edges between them, pasted with new ids and shifted", () => {
    const nodes = SPEC.nodes.map((node) => ({ ...toFlowNode(node), selected: true }));
    const edges = SPEC.edges.map(toFlowEdge);
    const clip = copySelection(nodes, edges);
    expect(clip.edges).toHaveLength(1);
    const pasted = pasteClip(clip, nodes, edges);
    expect(pasted.nodes.map((node) => node.id)).toEqual(["validate-1", "model-1"]);
    expect(pasted.nodes[1]?.position).toEqual({ x: 50.04, y: 45 });
    expect(pasted.edges[0]).toMatchObject({ source: "validate-1", target: "model-1" });
    const copy = pasted.nodes[0];
    if (copy === undefined) throw new Error("nothing pasted");
    copy.data.config.a = 99; // a deep copy: the original keeps its config
    expect(nodes[0]?.data.config.a).toBe(2);
  });

  it("leaves out edges to nodes that were not copied", () => {
    const nodes = SPEC.nodes.map((node) => ({ ...toFlowNode(node), selected: node.id === "m" }));
    expect(copySelection(nodes, SPEC.edges.map(toFlowEdge)).edges).toEqual([]);
  });
});

describe("auto layout", () => {
  it("puts each node to the right of what flows into it", () => {
    const laid = autoLayout(SPEC.nodes.map(toFlowNode).reverse(), SPEC.edges.map(toFlowEdge));
    const x = Object.fromEntries(laid.map((node) => [node.id, node.position.x]));
    expect(x.m).toBeGreaterThan(x.in ?? Infinity);
  });
});
