// The card's synced state, as the Python DeploymentCard declares it, and the messages it accepts.
import type { AnyModel } from "@anywidget/types";
import { useCallback, useSyncExternalStore } from "react";
import type { DriftBadge, MetricsSample } from "../../labextension/src/generated/api";

export interface CardState {
  name: string;
  version: string;
  status: string;
  reason: string;
  endpoint: string;
  auth: boolean;
  key_hint: string;
  curl: string;
  python: string;
  example: string;
  result: string;
  error: string;
  elapsed_ms: number | null;
  busy: boolean;
  usage: Usage;
  drift: Drift;
}

/** The server's drift over the last hour (`Deployment.drift_figures`); empty when it has none.
 * The sidebar's badge is the same figures, checked against the lab API's `DriftBadge`. */
export type Drift = Partial<DriftBadge>;

/** The server's usage figures (`Deployment.usage_figures`, picked from the control API's
 * `Resources` and `CostFigures`); empty before the first read. The sidebar shows the same
 * figures, checked against the lab API's `MetricsSample`. */
export type Usage = Partial<
  Pick<MetricsSample, "cpu_s" | "rss_bytes" | "cost_per_1000" | "cost_per_day" | "currency">
>;

export type CardModel = AnyModel<CardState>;

export type CardMessage =
  { type: "predict"; body: string } | { type: "refresh" } | { type: "reveal" };

/** The key and the snippets holding it: sent on request, kept in memory, never synced. */
export interface Secret {
  api_key: string;
  curl: string;
  python: string;
}

function isSecret(message: unknown): message is Secret & { type: "secret" } {
  return (
    typeof message === "object" &&
    message !== null &&
    (message as { type?: unknown }).type === "secret"
  );
}

/** Ask the kernel for the secret; resolves with its answer (or null after 5 s without one). */
export function reveal(model: CardModel): Promise<Secret | null> {
  return new Promise((resolve) => {
    const onMessage = (message: unknown) => {
      if (!isSecret(message)) return;
      window.clearTimeout(timer);
      model.off("msg:custom", onMessage);
      resolve({ api_key: message.api_key, curl: message.curl, python: message.python });
    };
    const timer = window.setTimeout(() => {
      model.off("msg:custom", onMessage);
      resolve(null);
    }, 5000);
    model.on("msg:custom", onMessage);
    model.send({ type: "reveal" } satisfies CardMessage);
  });
}

/** One synced trait of any widget, re-rendering the component when Python changes it. */
export function useTrait<S extends object, K extends keyof S & string>(
  model: AnyModel<S>,
  key: K,
): S[K] {
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
