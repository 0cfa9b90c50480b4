// The canary's share of traffic: follows the pointer while dragging, applied on release.
import { useEffect, useRef, useState } from "react";

interface CanarySliderProps {
  readonly name: string;
  readonly percent: number;
  /** Apply a share; resolves once the server answered (or the failure was reported). */
  readonly onApply: (percent: number) => Promise<void>;
}

/** A 0-100 range input whose value goes to the server on its native `change` (release). */
export function CanarySlider({ name, percent, onApply }: CanarySliderProps) {
  const input = useRef<HTMLInputElement>(null);
  const [draft, setDraft] = useState<number | null>(null);
  const apply = useRef(onApply);
  useEffect(() => {
    apply.current = onApply;
  }, [onApply]);

  useEffect(() => {
    const node = input.current;
    if (!node) return;
    // One request at a time: a release while one is in flight queues only the latest value.
    let running = false;
    let queued: number | null = null;
    const send = async (value: number): Promise<void> => {
      running = true;
      await apply.current(value);
      running = false;
      if (queued === null) {
        setDraft(null);
      } else {
        const next = queued;
        queued = null;
        await send(next);
      }
    };
    const onChange = () => {
      const value = Number(node.value);
      if (running) queued = value;
      else void send(value);
    };
    node.addEventListener("change", onChange);
    return () => {
      node.removeEventListener("change", onChange);
    };
  }, []);

  const shown = draft ?? percent;
  return (
    <label className="nstarx-sidebar__slider">
      <span>Canary share</span>
      <input
        ref={input}
        type="range"
        min={0}
        max={100}
        step={1}
        value={shown}
        aria-label={`Canary share of ${name}`}
        aria-valuetext={`${String(shown)} %`}
        onChange={(event) => {
          setDraft(Number(event.currentTarget.value));
        }}
      />
      <output aria-label={`Canary share of ${name} in percent`}>{`${String(shown)} %`}</output>
    </label>
  );
}
