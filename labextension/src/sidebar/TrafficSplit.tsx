// A deployment's traffic: one labelled bar per arm (revision or variant) with its share.
import type { MetricsSample, TrafficArm } from "../api";

function armLabel(arm: TrafficArm): string {
  return arm.version === null ? arm.variant : `${arm.variant} (${arm.version})`;
}

function formatPercent(percent: number): string {
  return `${String(Math.round(percent * 10) / 10)} %`;
}

function ms(value: number | null): string {
  return value === null ? "–" : `${String(Math.round(value * 10) / 10)} ms`;
}

/** An arm's own latency and rate, to compare a canary or a variant with the rest. */
function armFigures(figures: MetricsSample): string {
  const errors =
    figures.error_rate > 0
      ? ` · ${String(Math.round(figures.error_rate * 1000) / 10)} % errors`
      : "";
  return `p50 ${ms(figures.p50_ms)} · p99 ${ms(figures.p99_ms)} · ${String(Math.round(figures.rps * 10) / 10)} req/s${errors}`;
}

/** The split as bars; nothing when the server reports no traffic plan. */
export function TrafficSplit({ name, traffic }: { name: string; traffic: readonly TrafficArm[] }) {
  if (traffic.length === 0) return null;
  return (
    <ul className="nstarx-sidebar__traffic" aria-label={`Traffic split of ${name}`}>
      {traffic.map((arm) => (
        <li key={`${arm.variant}:${arm.version ?? ""}`} className="nstarx-sidebar__arm">
          <span className="nstarx-sidebar__arm-label">{armLabel(arm)}</span>
          <span
            className="nstarx-sidebar__arm-bar"
            role="meter"
            aria-label={`${armLabel(arm)} share`}
            aria-valuemin={0}
            aria-valuemax={100}
            aria-valuenow={arm.percent}
          >
            <span style={{ width: `${String(Math.min(Math.max(arm.percent, 0), 100))}%` }} />
          </span>
          <span className="nstarx-sidebar__arm-percent">{formatPercent(arm.percent)}</span>
          {arm.metrics && (
            <span className="nstarx-sidebar__arm-figures" aria-label={`${armLabel(arm)} figures`}>
              {armFigures(arm.metrics)}
            </span>
          )}
        </li>
      ))}
    </ul>
  );
}
