// One line of the server's usage figures: memory, CPU used, cost per 1,000 predictions and per day;
// one line of its drift over the last hour.
import { useTrait, type CardModel } from "./model";

function money(value: number, currency: string): string {
  const digits = value !== 0 && Math.abs(value) < 0.01 ? 4 : 2;
  return `${value.toFixed(digits)} ${currency}`.trim();
}

/** Nothing until the server has figures; then what it measured and what it costs. */
export function UsageLine({ model }: { model: CardModel }) {
  const usage = useTrait(model, "usage");
  const parts: string[] = [];
  if (typeof usage.rss_bytes === "number") parts.push(`${(usage.rss_bytes / 1e6).toFixed(0)} MB`);
  if (typeof usage.cpu_s === "number") parts.push(`${usage.cpu_s.toFixed(2)} CPU-s`);
  const currency = usage.currency ?? "";
  if (typeof usage.cost_per_1000 === "number") {
    parts.push(`${money(usage.cost_per_1000, currency)} / 1k predictions`);
  }
  if (typeof usage.cost_per_day === "number") {
    parts.push(`${money(usage.cost_per_day, currency)} / day`);
  }
  if (!parts.length) return null;
  return (
    <div
      className="nstarx-card__usage"
      data-testid="nstarx-card-usage"
      title="Last hour, server-side"
    >
      {parts.join(" · ")}
    </div>
  );
}

/** The server's drift over the last hour, as the sidebar's badge says it; nothing without it. */
export function DriftLine({ model }: { model: CardModel }) {
  const drift = useTrait(model, "drift");
  if (drift.status === undefined) return null;
  const drifted = drift.drifted ?? [];
  const text =
    drift.status === "drift"
      ? `drift on ${String(drifted.length)} feature${drifted.length === 1 ? "" : "s"}: ${drifted.join(", ")}`
      : drift.status === "ok"
        ? "no drift"
        : drift.status;
  return (
    <div
      className={`nstarx-card__drift nstarx-card__drift--${drift.status === "drift" ? "drift" : "ok"}`}
      data-testid="nstarx-card-drift"
      title={`Last hour, server-side: ${String(drift.rows ?? 0)} sampled rows`}
    >
      {`Drift: ${text}`}
    </div>
  );
}
