// The canvas's pipeline kept in step with its host: edits go out debounced (and into the undo
// history), a pipeline coming in is redrawn unless it is what the canvas last sent.
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import type { Dispatch, SetStateAction } from "react";
import { toPipelineSpec } from "./coerce";
import { canonical, toFlowEdge, toFlowNode, toSpec, type PipeEdge, type StepNode } from "./graph";
import { useHistory } from "./history";
import type { PipelineSpec } from "./types";

/** How long edits gather before the spec goes out (one validation per burst of typing). */
export const COMMIT_DELAY_MS = 150;

interface SyncOptions {
  spec: PipelineSpec;
  nodes: StepNode[];
  edges: PipeEdge[];
  setNodes: Dispatch<SetStateAction<StepNode[]>>;
  setEdges: Dispatch<SetStateAction<PipeEdge[]>>;
  onChange: (spec: PipelineSpec) => void;
  /** Where a pipeline coming in is drawn (one whose nodes nobody placed gets laid out). */
  arrange?: (nodes: StepNode[], edges: PipeEdge[]) => StepNode[];
}

export function usePipelineSync(options: SyncOptions) {
  const { spec, nodes, edges, setNodes, setEdges, onChange, arrange } = options;
  const latest = useRef({ spec, nodes, edges });
  useLayoutEffect(() => {
    latest.current = { spec, nodes, edges };
  });
  const [initial] = useState(() => canonical(spec));
  const synced = useRef(initial);
  const history = useHistory(initial);
  const { push, undo: back, redo: forward } = history;
  const timer = useRef<number | undefined>(undefined);

  /** Show `next` on the canvas (from Python, undo or redo). */
  const show = useCallback(
    (next: PipelineSpec) => {
      const links = next.edges.map(toFlowEdge);
      const placed = next.nodes.map(toFlowNode);
      setNodes(arrange ? arrange(placed, links) : placed);
      setEdges(links);
    },
    [setNodes, setEdges, arrange],
  );

  const emit = useCallback(
    (next: PipelineSpec, remember: boolean) => {
      const text = canonical(next);
      if (text === synced.current) return;
      synced.current = text;
      if (remember) push(text);
      onChange(next);
    },
    [push, onChange],
  );

  /** Send the canvas's pipeline after COMMIT_DELAY_MS without further edits. */
  const commit = useCallback(() => {
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => {
      const { spec: base, nodes: now, edges: links } = latest.current;
      emit(toSpec(base, now, links), true);
    }, COMMIT_DELAY_MS);
  }, [emit]);
  useEffect(
    () => () => {
      window.clearTimeout(timer.current);
    },
    [],
  );

  // Python → canvas: redraw only when the spec differs from what the canvas last sent.
  useEffect(() => {
    const text = canonical(spec);
    if (text === synced.current) return;
    synced.current = text;
    push(text);
    show(spec);
  }, [spec, show, push]);

  const restore = useCallback(
    (text: string | undefined) => {
      if (text === undefined) return;
      const next = toPipelineSpec({ ...latest.current.spec, ...toRecordOf(text) });
      show(next);
      emit(next, false);
    },
    [show, emit],
  );
  const undo = useCallback(() => {
    restore(back());
  }, [back, restore]);
  const redo = useCallback(() => {
    restore(forward());
  }, [forward, restore]);

  return { commit, undo, redo, canUndo: history.canUndo, canRedo: history.canRedo };
}

function toRecordOf(text: string): Record<string, unknown> {
  const value: unknown = JSON.parse(text);
  return typeof value === "object" && value !== null ? { ...value } : {};
}
