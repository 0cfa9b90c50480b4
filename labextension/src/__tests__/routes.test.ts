import { describe, expect, it } from "vitest";
import { routeTarget } from "../routes";
import type { AnswerOf, CallOf } from "../routes";
import type { DeploymentInfo, KeyInfo } from "../api";

describe("a route as the server extension's method and path", () => {
  it("fills each hole URI-encoded and appends the query", () => {
    expect(routeTarget("GET server", {})).toEqual({ method: "GET", path: "server" });
    expect(
      routeTarget("GET pipelines/{name}/versions/{version}", {
        params: { name: "a b/c", version: "3" },
      }),
    ).toEqual({ method: "GET", path: "pipelines/a%20b%2Fc/versions/3" });
    expect(
      routeTarget("PUT deployments/{name}/traffic", {
        params: { name: "iris" },
        body: { canary_percent: 10 },
        query: "target=kserve",
      }),
    ).toEqual({ method: "PUT", path: "deployments/iris/traffic?target=kserve" });
  });

  it("refuses a call without a hole's value (a cast got past the types)", () => {
    const missing = { params: {} } as unknown as CallOf<"DELETE keys/{id}">;
    expect(() => routeTarget("DELETE keys/{id}", missing)).toThrow("no value for {id}");
  });

  it("gives each route its answer and body types, and refuses others (checked by tsc)", () => {
    const listed: AnswerOf<"GET deployments"> = [] satisfies DeploymentInfo[];
    const revoked: AnswerOf<"DELETE keys/{id}"> | null = null satisfies KeyInfo | null;
    expect([listed, revoked]).toEqual([[], null]);
    // @ts-expect-error a route's answer is its own: a list of deployments is not one
    const wrong: AnswerOf<"GET deployments/{name}"> = [] satisfies DeploymentInfo[];
    // @ts-expect-error the path's hole needs its value
    const noName: CallOf<"GET deployments/{name}"> = {};
    // @ts-expect-error the traffic route reads a TrafficChange
    const badBody: CallOf<"PUT deployments/{name}/traffic"> = { params: { name: "a" }, body: {} };
    // @ts-expect-error only routes of the table
    routeTarget("GET nowhere", {});
    expect([wrong, noName, badBody]).toHaveLength(3);
  });
});
