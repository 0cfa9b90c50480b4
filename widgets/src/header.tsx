// Name, version, status badge (with the failure reason) and the Refresh button.
import { useEffect } from "react";
import { send, useTrait, type CardModel } from "./model";

const STATUS_CLASS: Record<string, string> = {
  Ready: "ready",
  Loading: "loading",
  Failed: "failed",
  Idle: "idle",
};

/** How often the card asks again while the deployment is still loading. */
const LOADING_POLL_MS = 2000;

export function Header({ model }: { model: CardModel }) {
  const name = useTrait(model, "name");
  const version = useTrait(model, "version");
  const status = useTrait(model, "status");
  const reason = useTrait(model, "reason");

  useEffect(() => {
    if (status !== "Loading") return undefined;
    const timer = window.setInterval(() => {
      send(model, { type: "refresh" });
    }, LOADING_POLL_MS);
    return () => {
      window.clearInterval(timer);
    };
  }, [model, status]);

  const tone = STATUS_CLASS[status] ?? "unknown";
  return (
    <header className="nstarx-card__header">
      <span className="nstarx-card__name" title="Deployment name">
        {name}
      </span>
      {version && (
        <span className="nstarx-card__version" title="Registry version, else deployment revision">
          {version}
        </span>
      )}
      <span
        className={`nstarx-card__status nstarx-card__status--${tone}`}
        data-testid="nstarx-card-status"
        role="status"
        title={reason ? `${status}: ${reason}` : status}
      >
        {status}
      </span>
      <button
        type="button"
        className="nstarx-card__refresh"
        title="Refresh status"
        onClick={() => {
          send(model, { type: "refresh" });
        }}
      >
        Refresh
      </button>
      {reason && (
        <div className="nstarx-card__reason" title="Why the deployment is not ready">
          {reason}
        </div>
      )}
    </header>
  );
}
