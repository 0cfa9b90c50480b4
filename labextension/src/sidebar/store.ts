// What more than one part of the sidebar reads: the local server, the deployments with their
// recent figures, the keys. Components read it through `useStore`; commands call its methods.
import { Signal } from "@lumino/signaling";
import { useSyncExternalStore } from "react";
import { api } from "../api";
import type { DeploymentInfo, KeyInfo, ServerInfo } from "../api";
import { attempt, reportError } from "./notify";

/** How many polls of figures each deployment's sparklines keep. */
export const HISTORY_LENGTH = 40;

/** One poll's figures for one deployment. */
export interface Sample {
  readonly p50: number | null;
  readonly p99: number | null;
  readonly rps: number;
}

export interface SidebarState {
  readonly server: ServerInfo | null;
  readonly deployments: readonly DeploymentInfo[];
  readonly history: ReadonlyMap<string, readonly Sample[]>;
  readonly keys: readonly KeyInfo[];
  /** Bumped by `refresh()`: lists a section fetches itself (the catalog) fetch again. */
  readonly refreshes: number;
  /** Whether the last poll failed (it is reported once, not every few seconds). */
  readonly unreachable: boolean;
}

const EMPTY: SidebarState = {
  server: null,
  deployments: [],
  history: new Map(),
  keys: [],
  refreshes: 0,
  unreachable: false,
};

function appendHistory(
  before: ReadonlyMap<string, readonly Sample[]>,
  deployments: readonly DeploymentInfo[],
): Map<string, readonly Sample[]> {
  const after = new Map<string, readonly Sample[]>();
  for (const { name, metrics } of deployments) {
    const sample = { p50: metrics.p50_ms, p99: metrics.p99_ms, rps: metrics.rps };
    after.set(name, [...(before.get(name) ?? []), sample].slice(-HISTORY_LENGTH));
  }
  return after;
}

/** The sidebar's shared state and the calls that change it. */
export class SidebarStore {
  private state: SidebarState = EMPTY;
  private polling: Promise<void> | null = null;
  private readonly changed = new Signal<this, void>(this);

  readonly getState = (): SidebarState => this.state;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.changed.connect(listener);
    return () => this.changed.disconnect(listener);
  };

  private set(patch: Partial<SidebarState>): void {
    this.state = { ...this.state, ...patch };
    this.changed.emit();
  }

  /** The server's state and the deployments; one request pair at a time, never overlapping. */
  poll(): Promise<void> {
    this.polling ??= this.fetchDeployments().finally(() => {
      this.polling = null;
    });
    return this.polling;
  }

  private async fetchDeployments(): Promise<void> {
    try {
      const [server, deployments] = await Promise.all([api.server(), api.deployments()]);
      const history = appendHistory(this.state.history, deployments);
      this.set({ server, deployments, history, unreachable: false });
    } catch (error) {
      if (!this.state.unreachable) reportError("Could not read the deployments", error);
      this.set({ unreachable: true });
    }
  }

  /** Everything again: server, deployments, keys and the catalog. */
  async refresh(): Promise<void> {
    this.set({ refreshes: this.state.refreshes + 1 });
    await Promise.all([this.poll(), this.loadKeys()]);
  }

  async loadKeys(): Promise<void> {
    const keys = await attempt("Could not list the API keys", api.keys);
    if (keys) this.set({ keys });
  }

  async startServer(): Promise<void> {
    const server = await attempt("Could not start the local server", api.startServer);
    if (server) {
      this.set({ server });
      await this.poll();
    }
  }

  /** Replace one deployment as an action answered it (the next poll brings its figures). */
  update(deployment: DeploymentInfo): void {
    const deployments = this.state.deployments.map((d) =>
      d.name === deployment.name ? deployment : d,
    );
    this.set({ deployments });
  }

  /** Merge one key's new record (created or revoked) into the list. */
  upsertKey(key: KeyInfo): void {
    const known = this.state.keys.some((k) => k.id === key.id);
    const keys = known
      ? this.state.keys.map((k) => (k.id === key.id ? key : k))
      : [key, ...this.state.keys];
    this.set({ keys });
  }
}

/** The store's state in a component, re-rendered on every change. */
export function useStore(store: SidebarStore): SidebarState {
  return useSyncExternalStore(store.subscribe, store.getState);
}
