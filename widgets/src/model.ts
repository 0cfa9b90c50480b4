// The card's synced state, as the Python DeploymentCard declares it, and the messages it accepts.
import type { AnyModel } from "@anywidget/types";
import { useCallback, useSyncExternalStore } from "react";

export interface CardState {
  name: string;
  version: string;
  status: string;
  reason: string;
  endpoint: string;
  auth: boolean;
  api_key: string;
  curl: string;
  python: string;
  example: string;
  result: string;
  error: string;
  elapsed_ms: number | null;
  busy: boolean;
}

export type CardModel = AnyModel<CardState>;

export type CardMessage = { type: "predict"; body: string } | { type: "refresh" };

/** One synced trait, re-rendering the component when Python changes it. */
export function useTrait<K extends keyof CardState>(model: CardModel, key: K): CardState[K] {
  const subscribe = useCallback(
    (onChange: () => void) => {
      model.on(`change:${key}`, onChange);
      return () => {
        model.off(`change:${key}`, onChange);
      };
    },
    [model, key],
  );
  return useSyncExternalStore(subscribe, () => model.get(key));
}

/** Ask the kernel to act; the answer comes back as trait changes. */
export function send(model: CardModel, message: CardMessage): void {
  model.send(message);
}
