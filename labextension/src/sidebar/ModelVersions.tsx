// A model's versions, fetched when the model is expanded, each with a Deploy button.
import { useEffect, useState } from "react";
import { api } from "../api";
import type { ModelVersionInfo } from "../api";
import { DeployForm } from "./DeployForm";
import { Chips, formatDate } from "./ModelRow";
import { useSidebarEnv } from "./context";
import { attempt } from "./notify";
import { useStore } from "./store";

function VersionFacts({ version }: { version: ModelVersionInfo }) {
  const tags = Object.entries(version.tags).map(([k, v]) => `${k}=${v}`);
  return (
    <dl className="nstarx-sidebar__facts">
      <dt>Flavor</dt>
      <dd>{version.flavor ?? "–"}</dd>
      <dt>Created</dt>
      <dd>{formatDate(version.created)}</dd>
      {version.aliases.length > 0 && (
        <>
          <dt>Aliases</dt>
          <dd>{version.aliases.map((alias) => `@${alias}`).join(", ")}</dd>
        </>
      )}
      {tags.length > 0 && (
        <>
          <dt>Tags</dt>
          <dd>
            <Chips items={tags} label={`Tags of version ${version.version}`} />
          </dd>
        </>
      )}
      <dt>Run</dt>
      <dd className="nstarx-sidebar__uri">{version.run_id ?? "–"}</dd>
      <dt>URI</dt>
      <dd className="nstarx-sidebar__uri">{version.uri}</dd>
    </dl>
  );
}

/** Every version of `model`, newest first as the registry lists them. */
export function ModelVersions({ model }: { model: string }) {
  const { store } = useSidebarEnv();
  const { refreshes } = useStore(store);
  const [versions, setVersions] = useState<readonly ModelVersionInfo[] | null>(null);
  const [deploying, setDeploying] = useState<string | null>(null);

  useEffect(() => {
    let stale = false;
    void attempt(`Could not list the versions of ${model}`, () => api.versions(model)).then(
      (answer) => {
        if (!stale) setVersions(answer ?? []);
      },
    );
    return () => {
      stale = true;
    };
  }, [model, refreshes]);

  if (versions === null) return <p className="nstarx-sidebar__empty">Loading versions…</p>;
  if (versions.length === 0) return <p className="nstarx-sidebar__empty">No versions.</p>;
  return (
    <ul className="nstarx-sidebar__versions" aria-label={`Versions of ${model}`}>
      {versions.map((version) => (
        <li
          key={version.version}
          className="nstarx-sidebar__version"
          aria-label={`${model} version ${version.version}`}
        >
          <div className="nstarx-sidebar__version-header">
            <span className="nstarx-sidebar__version-tag">{`v${version.version}`}</span>
            {version.description && <span>{version.description}</span>}
            <button
              type="button"
              className="jp-Button jp-mod-styled jp-mod-accept"
              aria-label={`Deploy ${model} version ${version.version}`}
              aria-expanded={deploying === version.version}
              onClick={() => {
                setDeploying(deploying === version.version ? null : version.version);
              }}
            >
              Deploy
            </button>
          </div>
          <VersionFacts version={version} />
          {deploying === version.version && (
            <DeployForm
              model={model}
              version={version.version}
              onClose={() => {
                setDeploying(null);
              }}
            />
          )}
        </li>
      ))}
    </ul>
  );
}
