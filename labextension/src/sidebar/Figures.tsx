// A deployment's live figures (p50, p99, requests/s) with the sparklines of their last polls, or
// of the last hour or day of per-minute rollups (a toggle), and its memory and cost. The rollups,
// memory and cost are the local server's: a cluster's deployment shows the live figures only.
import { useEffect, useState } from "react";
import { api } from "../api";
import type { MetricsSample, TrendPoint } from "../api";
import { reportError } from "./notify";
import { Sparkline } from "./Sparkline";
import type { Sample } from "./store";

const NO_SAMPLES: readonly Sample[] = [];
/** How often the hour or day of rollups is read again (they grow by one point a minute). */
const TREND_POLL_MS = 60_000;

type Range = "live" | "hour" | "day";
const RANGES: readonly Range[] = ["live", "hour", "day"];

function milliseconds(value: number | null): string {
  return value === null ? "–" : `${value < 10 ? value.toFixed(1) : value.toFixed(0)} ms`;
}

// Figures a server of an older version leaves out arrive as undefined: shown as "–" too.
function bytes(value: number | null | undefined): string {
  if (typeof value !== "number") return "–";
  const mb = value / 1e6;
  return mb >= 1000 ? `${(mb / 1000).toFixed(1)} GB` : `${mb.toFixed(0)} MB`;
}

function money(value: number | null | undefined, currency: string | null | undefined): string {
  if (typeof value !== "number") return "–";
  const digits = value !== 0 && Math.abs(value) < 0.01 ? 4 : 2;
  return `${value.toFixed(digits)} ${currency ?? ""}`.trim();
}

/** The sparkline samples of the rollups: one a minute. */
function fromTrend(points: readonly TrendPoint[]): Sample[] {
  return points.map((point) => ({ p50: point.p50_ms, p99: point.p99_ms, rps: point.rps }));
}

interface FiguresProps {
  readonly name: string;
  readonly metrics: MetricsSample;
  readonly history: readonly Sample[] | undefined;
  /** On the local server: the hour/day rollups and the memory and cost exist only there. */
  readonly local?: boolean;
}

/** Three figures, each with its value now and its sparkline; then memory and cost. */
export function Figures({ name, metrics, history = NO_SAMPLES, local = true }: FiguresProps) {
  const [range, setRange] = useState<Range>("live");
  const [trend, setTrend] = useState<readonly Sample[]>(NO_SAMPLES);
  useEffect(() => {
    if (range === "live") return undefined;
    let stopped = false; // an answer for a range no longer shown is dropped
    const read = async (): Promise<void> => {
      try {
        const answer = await api.trend(name, range);
        if (!stopped) setTrend(fromTrend(answer.points));
      } catch (error) {
        if (!stopped) reportError(`Could not read the trend of ${name}`, error);
      }
    };
    void read();
    const timer = window.setInterval(() => void read(), TREND_POLL_MS);
    return () => {
      stopped = true;
      window.clearInterval(timer);
    };
  }, [name, range]);

  const shown = range === "live" ? history : trend;
  const span = range === "live" ? `the last ${String(shown.length)} polls` : `the last ${range}`;
  const rows = [
    { label: "p50", text: milliseconds(metrics.p50_ms), values: shown.map((s) => s.p50) },
    { label: "p99", text: milliseconds(metrics.p99_ms), values: shown.map((s) => s.p99) },
    {
      label: "req/s",
      text: metrics.rps.toFixed(metrics.rps < 10 ? 2 : 1),
      values: shown.map((s) => s.rps),
    },
  ];
  const usage = local
    ? [
        { label: "mem", text: bytes(metrics.rss_bytes) },
        { label: "cost/1k", text: money(metrics.cost_per_1000, metrics.currency) },
        { label: "cost/day", text: money(metrics.cost_per_day, metrics.currency) },
      ]
    : [];
  return (
    <>
      {local && (
        <div className="nstarx-sidebar__ranges" role="group" aria-label={`Sparklines of ${name}`}>
          {RANGES.map((choice) => (
            <button
              key={choice}
              type="button"
              className="nstarx-sidebar__range"
              aria-pressed={range === choice}
              onClick={() => {
                setTrend(NO_SAMPLES);
                setRange(choice);
              }}
            >
              {choice}
            </button>
          ))}
        </div>
      )}
      <dl className="nstarx-sidebar__figures" aria-label={`Figures of ${name}`}>
        {rows.map((row) => (
          <div key={row.label} className="nstarx-sidebar__figure">
            <dt>{row.label}</dt>
            <dd>
              <span data-testid={`figure-${row.label}`}>{row.text}</span>
              <Sparkline values={row.values} label={`${row.label} of ${name} over ${span}`} />
            </dd>
          </div>
        ))}
        {usage.map((row) => (
          <div key={row.label} className="nstarx-sidebar__figure">
            <dt>{row.label}</dt>
            <dd>
              <span data-testid={`figure-${row.label}`}>{row.text}</span>
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
    </>
  );
}
