import { describe, expect, it } from "vitest";
import type { DeploymentInfo, ModelSummary } from "../api";
import { modelChoices } from "../pipeline/choices";

const model = (name: string, latest: string | null, aliases: Record<string, string> = {}) =>
  ({ name, latest_version: latest, aliases }) as unknown as ModelSummary;
const deployment = (name: string, status: string) =>
  ({ name, status }) as unknown as DeploymentInfo;

describe("the model field's choices", () => {
  it("are the registry's models, their aliases and the deployments, as the step's references", () => {
    const choices = modelChoices(
      [model("iris", "2", { champion: "2" }), model("fraud-lr", "1"), model("empty", null)],
      [deployment("iris", "Ready")],
    );
    expect(choices.map((choice) => choice.value)).toEqual([
      "models:/fraud-lr/1",
      "models:/iris/2",
      "models:/iris@champion",
      "deployment:iris",
    ]);
    expect(choices[2]?.label).toBe("iris @champion → v2");
    expect(choices[3]?.label).toBe("deployment iris (Ready)");
  });
});
