// What the model step's `model` field offers in the pipeline document: the registry's models
// (latest version and each alias) and the local server's deployments, as the references the
// step accepts (models:/NAME/VERSION, models:/NAME@ALIAS, deployment:NAME).
import { useEffect, useState } from "react";
import { api } from "../api";
import type { DeploymentInfo, ModelSummary } from "../api";
import type { Choice, FieldChoices } from "../flow/types";

export function modelChoices(
  models: readonly ModelSummary[],
  deployments: readonly DeploymentInfo[],
): Choice[] {
  const choices: Choice[] = [];
  for (const model of [...models].sort((a, b) => a.name.localeCompare(b.name))) {
    if (model.latest_version !== null) {
      choices.push({
        value: `models:/${model.name}/${model.latest_version}`,
        label: `${model.name} v${model.latest_version} (latest)`,
      });
    }
    for (const [alias, version] of Object.entries(model.aliases).sort()) {
      choices.push({
        value: `models:/${model.name}@${alias}`,
        label: `${model.name} @${alias} → v${version}`,
      });
    }
  }
  for (const deployment of [...deployments].sort((a, b) => a.name.localeCompare(b.name))) {
    choices.push({
      value: `deployment:${deployment.name}`,
      label: `deployment ${deployment.name} (${deployment.status})`,
    });
  }
  return choices;
}

/** The `model` field's choices, fetched when the document opens and again whenever `refresh`
 * changes (a deploy from the toolbar); none if the calls fail. */
export function useModelChoices(refresh: unknown): FieldChoices {
  const [choices, setChoices] = useState<FieldChoices>({});
  useEffect(() => {
    let live = true;
    void Promise.all([api.models().catch(() => []), api.deployments().catch(() => [])]).then(
      ([models, deployments]) => {
        if (live) setChoices({ model: modelChoices(models, deployments) });
      },
    );
    return () => {
      live = false;
    };
  }, [refresh]);
  return choices;
}
