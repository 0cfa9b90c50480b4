// A pipeline step on the canvas: label, component, kind colour, one handle per port, its
// problems and its part of the last test run.
import { Handle, Position, useUpdateNodeInternals, type NodeProps } from "@xyflow/react";
import { memo, useEffect, useRef } from "react";
import { portsOf, useCanvasIndex } from "./context";
import type { StepNode as StepNodeType } from "./graph";
import { isRecord } from "./coerce";
import type { NodeRun, Port } from "./types";

const PREVIEW_CHARS = 60;

export const StepNode = memo(function StepNode({ id, data, selected }: NodeProps<StepNodeType>) {
  const index = useCanvasIndex();
  const info = index.components.get(data.component);
  const ports = portsOf(index, id, data.component);
  const problems = index.nodeProblems.get(id);
  const run = index.runs[id];
  const failed = index.failed === id || (run?.error ?? null) !== null;
  const kind = info?.kind ?? "unknown";
  const colour = index.kindIndex.get(kind) ?? -1;
  const down = index.direction === "TB";
  const portKey = `${portSignature(ports.inputs)}|${portSignature(ports.outputs)}|${index.direction}`;
  const updateNodeInternals = useUpdateNodeInternals();
  const drawnPorts = useRef(portKey);
  useEffect(() => {
    // Only when the ports change after the first drawing: React Flow measures new nodes itself,
    // and a call per new node would let its initial fitView run with one node measured.
    if (drawnPorts.current === portKey) return;
    drawnPorts.current = portKey;
    updateNodeInternals(id);
  }, [id, portKey, updateNodeInternals]);

  const classes = ["nstarx-flow__node", `nstarx-flow__node--kind-${String(colour)}`];
  if (problems) classes.push("nstarx-flow__node--invalid");
  if (failed) classes.push("nstarx-flow__node--failed");
  if (selected) classes.push("nstarx-flow__node--selected");
  return (
    <div className={classes.join(" ")} title={problems ? problems.join("\n") : undefined}>
      <div className="nstarx-flow__node-head">
        <span className="nstarx-flow__node-label">{data.label ?? id}</span>
        {problems && (
          <span className="nstarx-flow__node-badge" data-testid={`node-problems-${id}`}>
            {problems.length}
          </span>
        )}
      </div>
      <div className="nstarx-flow__node-sub">
        {info?.title ?? `unknown component '${data.component}'`}
        {data.label && <span className="nstarx-flow__node-id"> · {id}</span>}
      </div>
      {ports.inputs.map((port, i) => (
        <PortHandle
          key={port.name}
          port={port}
          type="target"
          i={i}
          n={ports.inputs.length}
          down={down}
        />
      ))}
      {ports.outputs.map((port, i) => (
        <PortHandle
          key={port.name}
          port={port}
          type="source"
          i={i}
          n={ports.outputs.length}
          down={down}
        />
      ))}
      {run && <RunFooter run={run} />}
    </div>
  );
});

function portSignature(ports: Port[]): string {
  return ports.map((port) => port.name).join(",");
}

interface PortHandleProps {
  port: Port;
  type: "source" | "target";
  i: number;
  n: number;
  /** Top down: inputs on the top edge, outputs on the bottom one, spread across. */
  down: boolean;
}

function PortHandle({ port, type, i, n, down }: PortHandleProps) {
  const along = `${String(((i + 1) / (n + 1)) * 100)}%`;
  const side = down
    ? type === "target"
      ? Position.Top
      : Position.Bottom
    : type === "target"
      ? Position.Left
      : Position.Right;
  return (
    <Handle
      id={port.name}
      type={type}
      position={side}
      title={`${port.name}: ${port.type}`}
      style={down ? { left: along } : { top: along }}
      className={`nstarx-flow__port nstarx-flow__port--${port.type}`}
    >
      {n > 1 && <span className="nstarx-flow__port-name">{port.name}</span>}
    </Handle>
  );
}

function RunFooter({ run }: { run: NodeRun }) {
  const preview = run.error ?? previewText(run.preview);
  return (
    <div
      className={`nstarx-flow__run${run.error ? " nstarx-flow__run--error" : ""}`}
      title={run.error ?? JSON.stringify(run.preview, null, 2)}
    >
      <span className="nstarx-flow__run-status">{run.status ?? "ran"}</span>
      {run.ms !== undefined && <span className="nstarx-flow__run-ms">{run.ms.toFixed(1)} ms</span>}
      {run.rows_out !== undefined && <span>{run.rows_out} rows</span>}
      {preview && <div className="nstarx-flow__run-preview">{preview}</div>}
    </div>
  );
}

function previewText(value: unknown): string {
  if (value === undefined || value === null) return "";
  // One output port: show what went out of it, not the port's name around it.
  if (isRecord(value)) {
    const entries = Object.values(value);
    if (entries.length === 1) return previewText(entries[0]);
  }
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 1)}…` : text;
}
