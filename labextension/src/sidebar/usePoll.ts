// Call a function every few seconds while a condition holds: the next call waits for the
// previous one to settle, so slow answers never pile up.
import { useEffect, useRef } from "react";
import { reportError } from "./notify";

/** Run `call` now and then `intervalMs` after each run ends, while `active`. */
export function usePoll(call: () => Promise<void>, intervalMs: number, active: boolean): void {
  const latest = useRef(call);
  useEffect(() => {
    latest.current = call;
  }, [call]);

  useEffect(() => {
    if (!active) return;
    let stopped = false;
    let timer: number | undefined;
    const tick = async (): Promise<void> => {
      try {
        await latest.current();
      } catch (error) {
        reportError("Polling failed", error);
      }
      if (!stopped) timer = window.setTimeout(() => void tick(), intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [active, intervalMs]);
}
