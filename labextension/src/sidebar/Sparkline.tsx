// A tiny inline-SVG line of a figure's recent values (gaps where a poll had no value).
import { memo } from "react";

interface SparklineProps {
  readonly values: readonly (number | null)[];
  readonly label: string;
  readonly width?: number;
  readonly height?: number;
}

/** The polyline segments of `values`, scaled into the box, split where a value is missing. */
function segments(values: readonly (number | null)[], w: number, h: number) {
  const known = values.filter((v): v is number => v !== null);
  const top = Math.max(...known, 0);
  const step = w / Math.max(values.length - 1, 1); // the first poll at the left edge
  const lines: string[] = [];
  let current: string[] = [];
  values.forEach((value, i) => {
    if (value === null) {
      if (current.length) lines.push(current.join(" "));
      current = [];
      return;
    }
    const y = top > 0 ? h - 1 - (value / top) * (h - 2) : h - 1;
    current.push(`${(i * step).toFixed(1)},${y.toFixed(1)}`);
  });
  if (current.length) lines.push(current.join(" "));
  return lines;
}

/** A figure's recent values as a sparkline, the oldest at the left, the newest at the right. */
export const Sparkline = memo(function Sparkline({
  values,
  label,
  width = 60,
  height = 18,
}: SparklineProps) {
  const lines = segments(values, width, height);
  return (
    <svg
      className="nstarx-sidebar__sparkline"
      role="img"
      aria-label={label}
      width={width}
      height={height}
      viewBox={`0 0 ${String(width)} ${String(height)}`}
    >
      <line x1={0} y1={height - 0.5} x2={width} y2={height - 0.5} className="baseline" />
      {lines.map((points, i) =>
        points.includes(" ") ? (
          <polyline key={i} points={points} />
        ) : (
          <circle key={i} r={1.2} cx={points.split(",")[0]} cy={points.split(",")[1]} />
        ),
      )}
    </svg>
  );
});
