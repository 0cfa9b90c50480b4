import { describe, expect, it } from "vitest";
import { toPipelineSpec, toProblems, toRunResult } from "../flow/coerce";

describe("what arrives from outside", () => {
  it("keeps a well-formed spec and drops malformed nodes and edges", () => {
    const spec = toPipelineSpec({
      name: "p",
      nodes: [{ id: "a", component: "model" }, { component: "no id" }, "junk"],
      edges: [{ id: "e", source: "a", target: "b" }, { source: "a" }],
    });
    expect(spec.nodes.map((node) => node.id)).toEqual(["a"]);
    expect(spec.edges).toEqual([
      { id: "e", source: "a", source_port: "out", target: "b", target_port: "in" },
    ]);
  });

  it("turns anything but an object into an empty pipeline", () => {
    const spec = toPipelineSpec([1, 2]);
    expect(spec.nodes).toEqual([]);
    expect(spec.edges).toEqual([]);
  });

  it("keeps only problems it can show", () => {
    const problems = toProblems([
      { target: "node", id: "a", code: "x", message: "bad" },
      { target: "elsewhere", message: "?" },
      null,
    ]);
    expect(problems).toHaveLength(1);
  });

  it("reads a failed run's node and message", () => {
    const run = toRunResult({ error: "boom", node: "m", nodes: { m: { status: "error" } } });
    expect(run).toMatchObject({ error: "boom", node: "m" });
  });
});
