import { describe, expect, it } from "vitest";
import { parseScopes, scopeProblem, suggestedScopes } from "../sidebar/scopes";

describe("the scopes of a key minted from the lab", () => {
  it("allows calling, managing and metrics of named deployments", () => {
    expect(scopeProblem(["predict:iris", "manage:iris", "metrics", "iris"])).toBeNull();
  });

  it("refuses admin and wildcards, naming the scope", () => {
    for (const scope of ["admin", "predict:*", "manage:*", "*"]) {
      expect(scopeProblem(["predict:iris", scope])).toContain(`'${scope}'`);
    }
  });

  it("suggests calling the first deployment, else nothing", () => {
    expect(suggestedScopes([{ name: "iris" }, { name: "wine" }])).toBe("predict:iris");
    expect(suggestedScopes([])).toBe("");
    expect(parseScopes(suggestedScopes([]))).toBeNull();
  });
});
