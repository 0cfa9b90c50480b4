import { describe, expect, it } from "vitest";
import type { DriftBadge } from "../api";
import { driftText } from "../sidebar/DriftBadge";

describe("the drift badge's text", () => {
  it("counts the drifted features", () => {
    const one: DriftBadge = { status: "drift", drifted: ["age"], score: 3.2, rows: 300 };
    const two: DriftBadge = { ...one, drifted: ["age", "prediction"] };
    expect(driftText(one)).toEqual({ text: "drift on 1 feature", kind: "drift" });
    expect(driftText(two)).toEqual({ text: "drift on 2 features", kind: "drift" });
  });

  it("says when there is nothing to compare", () => {
    const base = { drifted: [] as string[], score: null, rows: 0 };
    expect(driftText({ ...base, status: "ok" }).kind).toBe("ok");
    expect(driftText({ ...base, status: "no reference" }).text).toBe("no reference");
    expect(driftText({ ...base, status: "no traffic" }).kind).toBe("none");
  });
});
