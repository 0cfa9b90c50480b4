// An edge between two ports, red with its problems as a tooltip when the validator objects.
import { getBezierPath, type EdgeProps } from "@xyflow/react";
import { memo } from "react";
import { useCanvasIndex } from "./context";
import type { PipeEdge as PipeEdgeType } from "./graph";

export const PipeEdge = memo(function PipeEdge(props: EdgeProps<PipeEdgeType>) {
  const { id, sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition } = props;
  const problems = useCanvasIndex().edgeProblems.get(id);
  const [path] = getBezierPath({
    sourceX,
    sourceY,
    targetX,
    targetY,
    sourcePosition,
    targetPosition,
  });
  const title = problems ? problems.join("\n") : `${props.source} → ${props.target}`;
  const invalid = problems ? " nstarx-flow__edge--invalid" : "";
  return (
    <g className={`nstarx-flow__edge${invalid}`} data-testid={`edge-${id}`}>
      <path d={path} className="react-flow__edge-path" markerEnd={props.markerEnd}>
        <title>{title}</title>
      </path>
      <path
        d={path}
        className="react-flow__edge-interaction"
        fill="none"
        strokeOpacity={0}
        strokeWidth={20}
      >
        <title>{title}</title>
      </path>
    </g>
  );
});
