// A deployment's live figures (p50, p99, requests/s) with the sparklines of their last polls.
import type { MetricsSample } from "../api";
import { Sparkline } from "./Sparkline";
import type { Sample } from "./store";

const NO_SAMPLES: readonly Sample[] = [];

function milliseconds(value: number | null): string {
  return value === null ? "–" : `${value < 10 ? value.toFixed(1) : value.toFixed(0)} ms`;
}

interface FiguresProps {
  readonly name: string;
  readonly metrics: MetricsSample;
  readonly history: readonly Sample[] | undefined;
}

/** Three figures, each with its value now and its sparkline. */
export function Figures({ name, metrics, history = NO_SAMPLES }: FiguresProps) {
  const rows = [
    { label: "p50", text: milliseconds(metrics.p50_ms), values: history.map((s) => s.p50) },
    { label: "p99", text: milliseconds(metrics.p99_ms), values: history.map((s) => s.p99) },
    {
      label: "req/s",
      text: metrics.rps.toFixed(metrics.rps < 10 ? 2 : 1),
      values: history.map((s) => s.rps),
    },
  ];
  return (
    <dl className="nstarx-sidebar__figures" aria-label={`Figures of ${name}`}>
      {rows.map((row) => (
        <div key={row.label} className="nstarx-sidebar__figure">
          <dt>{row.label}</dt>
          <dd>
            <span data-testid={`figure-${row.label}`}>{row.text}</span>
            <Sparkline
              values={row.values}
              label={`${row.label} of ${name} over the last ${String(history.length)} polls`}
            />
          </dd>
        </div>
      ))}
      {metrics.error_rate > 0 && (
        <div className="nstarx-sidebar__figure nstarx-sidebar__figure--bad">
          <dt>errors</dt>
          <dd>{`${(metrics.error_rate * 100).toFixed(1)} %`}</dd>
        </div>
      )}
    </dl>
  );
}
