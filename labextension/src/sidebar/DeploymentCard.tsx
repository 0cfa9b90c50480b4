// One deployment: its status (and its way to Ready on a cluster), revisions, model(s), traffic
// split, live figures and actions.
import { memo, useCallback } from "react";
import { api } from "../api";
import type { DeploymentInfo } from "../api";
import { CanarySlider } from "./CanarySlider";
import { useSidebarEnv } from "./context";
import { DeploymentActions } from "./DeploymentActions";
import { DriftBadge } from "./DriftBadge";
import { Figures } from "./Figures";
import { attempt } from "./notify";
import type { Sample } from "./store";
import { TrafficSplit } from "./TrafficSplit";
import { progressSteps } from "./where";

const STATUS_CLASSES: Record<string, string> = {
  Ready: "ready",
  Loading: "loading",
  Idle: "idle",
  Failed: "failed",
};

function StatusBadge({ status, reason }: { status: string; reason: string | null }) {
  const kind = STATUS_CLASSES[status] ?? "unknown";
  return (
    <span className="nstarx-sidebar__status-line">
      <span
        className={`nstarx-sidebar__badge nstarx-sidebar__badge--${kind}`}
        role="status"
        aria-label={`Status: ${status}`}
      >
        {status}
      </span>
      {reason && (
        <span
          className={`nstarx-sidebar__reason${kind === "failed" ? "" : " nstarx-sidebar__reason--info"}`}
        >
          {reason}
        </span>
      )}
    </span>
  );
}

/** Deploy-to-Ready progress (accepted, predictor scheduled, model loaded, ready) while not Ready. */
function Progress({ name, stage, status }: { name: string; stage: string | null; status: string }) {
  const steps = progressSteps(stage, status);
  if (steps === null) return null;
  return (
    <ol className="nstarx-sidebar__progress" aria-label={`Progress of ${name}`}>
      {steps.map((step) => (
        <li
          key={step.stage}
          className={`nstarx-sidebar__step nstarx-sidebar__step--${step.state}`}
          aria-current={step.state === "current" ? "step" : undefined}
          aria-label={`${step.label}: ${step.state}`}
        >
          {step.label}
        </li>
      ))}
    </ol>
  );
}

interface DeploymentCardProps {
  readonly deployment: DeploymentInfo;
  readonly history: readonly Sample[] | undefined;
}

/** A deployment's card; re-rendered only when its own record or history changes. */
export const DeploymentCard = memo(function DeploymentCard({
  deployment,
  history,
}: DeploymentCardProps) {
  const { store } = useSidebarEnv();
  const { name } = deployment;
  const headingId = `nstarx-deployment-${name}`;
  const canary = deployment.stable_revision !== null;
  // A server of an older version sends no target (nor stage): its deployments are local.
  const local = deployment.target !== "kserve";

  const applyShare = useCallback(
    async (percent: number) => {
      const answer = await attempt(`Could not move the canary share of ${name}`, () =>
        api.setCanary(name, percent, store.getState().where),
      );
      if (answer) store.update(answer);
    },
    [name, store],
  );

  return (
    <article className="nstarx-sidebar__card" aria-labelledby={headingId}>
      <header className="nstarx-sidebar__card-header">
        <h4 id={headingId}>{name}</h4>
        <StatusBadge status={deployment.status} reason={deployment.reason} />
      </header>
      <Progress name={name} stage={deployment.stage ?? null} status={deployment.status} />
      <DriftBadge drift={deployment.drift} />
      <dl className="nstarx-sidebar__facts">
        {!local && (
          <>
            <dt>Namespace</dt>
            <dd>{deployment.namespace ?? "–"}</dd>
          </>
        )}
        <dt>Revision</dt>
        <dd>
          {deployment.revision}
          {canary && ` (canary; stable ${String(deployment.stable_revision)})`}
        </dd>
        <dt>{canary ? "Canary model" : "Model"}</dt>
        <dd className="nstarx-sidebar__uri">{deployment.model ?? "–"}</dd>
        {canary && (
          <>
            <dt>Stable model</dt>
            <dd className="nstarx-sidebar__uri">{deployment.stable_model ?? "–"}</dd>
          </>
        )}
        <dt>Replicas</dt>
        <dd>{`${String(deployment.min_replicas)}–${String(deployment.max_replicas)}`}</dd>
        {deployment.max_batch_size !== null && (
          <>
            <dt>Batching</dt>
            <dd>{batchingText(deployment.max_batch_size, deployment.max_latency_ms)}</dd>
          </>
        )}
      </dl>
      <TrafficSplit name={name} traffic={deployment.traffic} />
      {canary && deployment.canary_percent !== null && (
        <CanarySlider name={name} percent={deployment.canary_percent} onApply={applyShare} />
      )}
      <Figures name={name} metrics={deployment.metrics} history={history} local={local} />
      <DeploymentActions deployment={deployment} />
    </article>
  );
});

function batchingText(rows: number, waitMs: number | null): string {
  const wait = waitMs === null ? "" : `, waits ${String(waitMs)} ms`;
  return `up to ${String(rows)} rows${wait}`;
}
