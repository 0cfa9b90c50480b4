import { describe, expect, it } from "vitest";
import { nameFromPath, parse, SCHEMA_VERSION, serialize, starterText } from "../pipeline/file";

describe("a pipeline file's name", () => {
  it.each([
    ["untitled.pipeline.json", "untitled"],
    ["work/Fraud Detector.pipeline.json", "fraud-detector"],
    ["2024_scores.pipeline.json", "scores"],
    ["---.pipeline.json", "pipeline"],
    ["x".repeat(80) + ".pipeline.json", "x".repeat(63)],
  ])("%s is served as %s", (path, name) => {
    expect(nameFromPath(path)).toBe(name);
    expect(name).toMatch(/^[a-z]([-a-z0-9]*[a-z0-9])?$/);
  });
});

describe("the file's text", () => {
  it("of a new pipeline parses back to an empty pipeline of the current format", () => {
    const parsed = parse(starterText("dir/churn.pipeline.json"));
    expect(parsed).toEqual({
      spec: {
        schema_version: SCHEMA_VERSION,
        name: "churn",
        description: "",
        nodes: [],
        edges: [],
      },
    });
  });

  it("is written as Python writes it: 2-space JSON and a final newline", () => {
    const text = starterText("a.pipeline.json");
    expect(text.endsWith("}\n")).toBe(true);
    expect(text).toContain('\n  "name": "a",\n');
    const parsed = parse(text);
    if (!("spec" in parsed)) throw new Error(parsed.error);
    expect(serialize(parsed.spec)).toBe(text);
  });

  it("without a schema_version (format 0) reads as the current format", () => {
    const parsed = parse(JSON.stringify({ name: "old", nodes: [{ id: "m", component: "model" }] }));
    if (!("spec" in parsed)) throw new Error(parsed.error);
    expect(parsed.spec.schema_version).toBe(SCHEMA_VERSION);
    expect(parsed.spec.nodes[0]).toEqual({
      id: "m",
      component: "model",
      config: {},
      label: null,
      position: { x: 0, y: 0 },
    });
  });

  it.each([
    ["", "empty"],
    ["{nodes: [", "not valid JSON"],
    ["[1, 2]", "one JSON object"],
    [JSON.stringify({ name: "new", schema_version: 2 }), "newer than this editor"],
    [JSON.stringify({ name: "odd", schema_version: "1" }), "newer than this editor"],
  ])("%j is refused: %s", (text, reason) => {
    const parsed = parse(text);
    expect("error" in parsed && parsed.error).toContain(reason);
  });
});
