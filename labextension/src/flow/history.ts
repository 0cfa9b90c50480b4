// Undo and redo over snapshots of the pipeline (canonical JSON text, so equal states dedupe).
import { useMemo, useRef, useState } from "react";

const LIMIT = 100;

export interface HistoryActions {
  push: (snapshot: string) => void;
  /** The snapshot to go back to, or undefined when there is none. */
  undo: () => string | undefined;
  redo: () => string | undefined;
}

interface Stacks {
  past: string[];
  future: string[];
}

/** Stable actions (safe in effect dependencies) and whether each direction has a step. */
export function useHistory(
  initial: string,
): HistoryActions & { canUndo: boolean; canRedo: boolean } {
  const stacks = useRef<Stacks>({ past: [initial], future: [] });
  const [sizes, setSizes] = useState({ past: 1, future: 0 });
  const actions = useMemo<HistoryActions>(() => {
    const update = (next: Stacks) => {
      stacks.current = next;
      setSizes({ past: next.past.length, future: next.future.length });
    };
    return {
      push: (snapshot) => {
        const { past } = stacks.current;
        if (past[past.length - 1] === snapshot) return;
        update({ past: [...past, snapshot].slice(-LIMIT), future: [] });
      },
      undo: () => {
        const { past, future } = stacks.current;
        const top = past[past.length - 1];
        if (past.length < 2 || top === undefined) return undefined;
        const rest = past.slice(0, -1);
        update({ past: rest, future: [top, ...future] });
        return rest[rest.length - 1];
      },
      redo: () => {
        const { past, future } = stacks.current;
        const [next, ...rest] = future;
        if (next === undefined) return undefined;
        update({ past: [...past, next], future: rest });
        return next;
      },
    };
  }, []);
  return { ...actions, canUndo: sizes.past > 1, canRedo: sizes.future > 0 };
}
