// Deploy a registry version: name, replicas, batching, and a canary share when the
// deployment exists; on a cluster, where its artifact was uploaded. The key minted for a new
// local deployment is shown once (a cluster's InferenceService gets none: keys are local).
import { useState } from "react";
import type { FormEvent } from "react";
import { api } from "../api";
import type { DeployRequest, DeployResult } from "../api";
import { useSidebarEnv } from "./context";
import { NumberField } from "./NumberField";
import { attempt } from "./notify";
import { OnceKey } from "./OnceKey";
import { useStore } from "./store";
import { whereLabel } from "./where";

interface DeployFormProps {
  readonly model: string;
  readonly version: string;
  readonly onClose: () => void;
}

/** The form, then what the deploy answered. */
export function DeployForm({ model, version, onClose }: DeployFormProps) {
  const { store } = useSidebarEnv();
  const { deployments, where } = useStore(store);
  const cluster = where.target !== "local";
  const [storageUri, setStorageUri] = useState("");
  const [name, setName] = useState(model);
  const [minReplicas, setMinReplicas] = useState(1);
  const [maxReplicas, setMaxReplicas] = useState(1);
  const [batching, setBatching] = useState(false);
  const [maxBatchSize, setMaxBatchSize] = useState(8);
  const [maxLatencyMs, setMaxLatencyMs] = useState(10);
  const [canary, setCanary] = useState(false);
  const [canaryPercent, setCanaryPercent] = useState(10);
  const [pending, setPending] = useState(false);
  const [result, setResult] = useState<DeployResult | null>(null);
  const exists = deployments.some((d) => d.name === name.trim());

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const request: DeployRequest = {
      name: name.trim(),
      model,
      version,
      min_replicas: minReplicas,
      max_replicas: maxReplicas,
      max_batch_size: batching ? maxBatchSize : null,
      max_latency_ms: batching ? maxLatencyMs : null,
      canary_percent: canary && exists ? canaryPercent : null,
      storage_uri: cluster && storageUri.trim() ? storageUri.trim() : null,
    };
    setPending(true);
    const answer = await attempt(`Could not deploy ${model} v${version}`, () =>
      api.deploy(request, where),
    );
    setPending(false);
    if (answer) {
      setResult(answer);
      await store.deployed(answer);
    }
  };

  if (result) {
    const { deployment, key } = result;
    return (
      <div
        className="nstarx-sidebar__form"
        role="region"
        aria-label={`Deployed ${deployment.name}`}
      >
        <p role="status">
          {deployment.target === "local"
            ? `Deployed ${model} v${version} as ${deployment.name} (revision ${String(deployment.revision)}).`
            : `Applied ${model} v${version} as ${deployment.name} (revision ${String(deployment.revision)}) to ${whereLabel(where)}; its progress shows in the list.`}
        </p>
        {key ? (
          <OnceKey secret={key} label={`API key for ${deployment.name}`} onDismiss={onClose} />
        ) : (
          <button type="button" className="jp-Button jp-mod-styled" onClick={onClose}>
            Done
          </button>
        )}
      </div>
    );
  }

  return (
    <form
      className="nstarx-sidebar__form"
      aria-label={`Deploy ${model} version ${version}`}
      onSubmit={(event) => void submit(event)}
    >
      {cluster && <p className="nstarx-sidebar__note">{`To ${whereLabel(where)}`}</p>}
      <label>
        <span>Deployment name</span>
        <input
          className="jp-mod-styled"
          required
          maxLength={63}
          value={name}
          onChange={(event) => {
            setName(event.currentTarget.value);
          }}
        />
      </label>
      {cluster && (
        <label title="Where the version's artifact was uploaded; empty: the registry's artifact when it is on remote storage, else its upload to the model store ($NSTARX_MODEL_STORE)">
          <span>Storage URI</span>
          <input
            className="jp-mod-styled"
            maxLength={2048}
            placeholder="s3://bucket/path"
            value={storageUri}
            onChange={(event) => {
              setStorageUri(event.currentTarget.value);
            }}
          />
        </label>
      )}
      <div className="nstarx-sidebar__row">
        <NumberField label="Min replicas" value={minReplicas} min={0} onChange={setMinReplicas} />
        <NumberField
          label="Max replicas"
          value={maxReplicas}
          min={Math.max(minReplicas, 1)}
          onChange={setMaxReplicas}
        />
      </div>
      <label className="nstarx-sidebar__check">
        <input
          type="checkbox"
          checked={batching}
          onChange={(event) => {
            setBatching(event.currentTarget.checked);
          }}
        />
        <span>Batching</span>
      </label>
      <div className="nstarx-sidebar__row">
        <NumberField
          label="Max batch size"
          value={maxBatchSize}
          min={1}
          disabled={!batching}
          onChange={setMaxBatchSize}
        />
        <NumberField
          label="Max latency ms"
          value={maxLatencyMs}
          min={1}
          disabled={!batching}
          onChange={setMaxLatencyMs}
        />
      </div>
      <label
        className="nstarx-sidebar__check"
        title={exists ? undefined : `Only for an existing deployment: ${name} is not deployed`}
      >
        <input
          type="checkbox"
          checked={canary && exists}
          disabled={!exists}
          onChange={(event) => {
            setCanary(event.currentTarget.checked);
          }}
        />
        <span>Canary</span>
      </label>
      <NumberField
        label="Canary percent"
        value={canaryPercent}
        min={0}
        max={100}
        disabled={!exists || !canary}
        onChange={setCanaryPercent}
      />
      {!exists && (
        <p className="nstarx-sidebar__note">A canary needs an existing deployment of that name.</p>
      )}
      <div className="nstarx-sidebar__row">
        <button type="submit" className="jp-Button jp-mod-styled jp-mod-accept" disabled={pending}>
          {pending ? "Deploying…" : canary && exists ? "Deploy canary" : "Deploy"}
        </button>
        <button type="button" className="jp-Button jp-mod-styled" onClick={onClose}>
          Cancel
        </button>
      </div>
    </form>
  );
}
