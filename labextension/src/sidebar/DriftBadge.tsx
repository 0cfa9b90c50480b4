// A deployment's drift over the last hour: the control API's answer, shown as it is.
import type { DriftBadge as Drift } from "../api";

/** The badge's text and kind for the server's drift status. */
export function driftText(drift: Drift): { text: string; kind: string } {
  switch (drift.status) {
    case "ok":
      return { text: "no drift", kind: "ok" };
    case "drift": {
      const count = drift.drifted.length;
      return { text: `drift on ${String(count)} feature${count === 1 ? "" : "s"}`, kind: "drift" };
    }
    case "no reference":
      return { text: "no reference", kind: "none" };
    case "no traffic":
      return { text: "drift: no traffic", kind: "none" };
  }
}

export function DriftBadge({ drift }: { drift: Drift | null | undefined }) {
  // undefined: a server extension older than drift detection
  if (drift === null || drift === undefined) return null;
  const { text, kind } = driftText(drift);
  const detail =
    drift.status === "drift"
      ? `Drifted over the last hour: ${drift.drifted.join(", ")} (${String(drift.rows)} rows)`
      : `Drift over the last hour: ${text} (${String(drift.rows)} rows)`;
  return (
    <div className="nstarx-sidebar__drift-line">
      <span
        className={`nstarx-sidebar__badge nstarx-sidebar__drift nstarx-sidebar__drift--${kind}`}
        role="status"
        aria-label={`Drift: ${text}`}
        title={detail}
      >
        {text}
      </span>
    </div>
  );
}
