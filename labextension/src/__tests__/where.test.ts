import { describe, expect, it } from "vitest";
import {
  LOCAL,
  WHERE_KEY,
  loadWhere,
  namespaceProblem,
  parseWhere,
  progressSteps,
  saveWhere,
  sameWhere,
  whereLabel,
  whereQuery,
} from "../sidebar/where";
import { routeTarget } from "../routes";
import type { Where } from "../sidebar/where";

const CLUSTER: Where = { target: "kserve", context: "prod east", namespace: "ml-team" };

function memoryStorage(): Pick<Storage, "getItem" | "setItem"> {
  const kept = new Map<string, string>();
  return {
    getItem: (key) => kept.get(key) ?? null,
    setItem: (key, value) => {
      kept.set(key, value);
    },
  };
}

describe("where deployments run, as the routes' query", () => {
  it("adds nothing for the local server, and the target, context and namespace for a cluster", () => {
    expect(whereQuery(LOCAL)).toBe("");
    expect(routeTarget("GET deployments", { query: whereQuery(LOCAL) }).path).toBe("deployments");
    const call = { params: { name: "iris" }, query: whereQuery(CLUSTER) };
    expect(routeTarget("GET deployments/{name}", call).path).toBe(
      "deployments/iris?target=kserve&context=prod+east&namespace=ml-team",
    );
  });

  it("leaves out what the server defaults", () => {
    const current: Where = { target: "kserve", context: null, namespace: null };
    expect(whereQuery(current)).toBe("target=kserve");
  });

  it("compares and names choices", () => {
    expect(sameWhere(CLUSTER, { ...CLUSTER })).toBe(true);
    expect(sameWhere(CLUSTER, { ...CLUSTER, namespace: "other" })).toBe(false);
    expect(whereLabel(LOCAL)).toBe("Local");
    expect(whereLabel(CLUSTER)).toBe("prod east / ml-team");
  });
});

describe("the kept choice", () => {
  it("round-trips through the storage", () => {
    const storage = memoryStorage();
    expect(loadWhere(storage)).toEqual(LOCAL);
    saveWhere(storage, CLUSTER);
    expect(storage.getItem(WHERE_KEY)).not.toBeNull();
    expect(loadWhere(storage)).toEqual(CLUSTER);
  });

  it("reads anything malformed as the local server, and drops a bad namespace", () => {
    for (const stored of ["{", "null", "[]", '"kserve"', '{"target":"cloud"}']) {
      expect(parseWhere(stored)).toEqual(LOCAL);
    }
    expect(parseWhere('{"target":"kserve","context":"a","namespace":"Bad_NS"}')).toEqual({
      target: "kserve",
      context: "a",
      namespace: null,
    });
    expect(parseWhere('{"target":"kserve","context":""}')).toEqual({
      target: "kserve",
      context: null,
      namespace: null,
    });
  });

  it("survives a storage that throws", () => {
    const refusing = {
      getItem: (): string | null => {
        throw new Error("denied");
      },
      setItem: () => {
        throw new Error("denied");
      },
    };
    expect(loadWhere(refusing)).toEqual(LOCAL);
    expect(() => {
      saveWhere(refusing, CLUSTER);
    }).not.toThrow();
    expect(loadWhere(null)).toEqual(LOCAL);
  });
});

describe("namespace names", () => {
  it("takes DNS labels only", () => {
    expect(namespaceProblem("ml-team")).toBeNull();
    expect(namespaceProblem("a")).toBeNull();
    expect(namespaceProblem("")).toContain("needed");
    expect(namespaceProblem("-a")).toContain("'-'");
    expect(namespaceProblem("ML")).not.toBeNull();
    expect(namespaceProblem("a".repeat(64))).toContain("63");
  });
});

describe("deploy-to-ready progress", () => {
  it("shows nothing once ready, or where the backend reports no stage", () => {
    expect(progressSteps(null, "Loading")).toBeNull();
    expect(progressSteps("ready", "Ready")).toBeNull();
    expect(progressSteps("scheduled", "Ready")).toBeNull();
    expect(progressSteps("loaded", "Idle")).toBeNull();
    expect(progressSteps("somewhere", "Loading")).toBeNull();
  });

  it("marks the passed stages done and the next one under way", () => {
    const steps = progressSteps("scheduled", "Loading");
    expect(steps?.map((s) => [s.label, s.state])).toEqual([
      ["accepted", "done"],
      ["predictor scheduled", "done"],
      ["model loaded", "current"],
      ["ready", "todo"],
    ]);
    expect(progressSteps("accepted", "Unknown")?.map((s) => s.state)).toEqual([
      "done",
      "current",
      "todo",
      "todo",
    ]);
  });

  it("shows a failure after acceptance", () => {
    expect(progressSteps("failed", "Failed")?.map((s) => [s.stage, s.state])).toEqual([
      ["accepted", "done"],
      ["failed", "failed"],
    ]);
  });
});
