// What more than one part of the sidebar reads: the local server, where deployments run (the
// backend picker's choice), the deployments with their recent figures, the keys. Components
// read it through `useStore`; commands call its methods.
import { Signal } from "@lumino/signaling";
import { useSyncExternalStore } from "react";
import { api } from "../api";
import type { Contexts, DeployResult, DeploymentInfo, KeyInfo, ServerInfo } from "../api";
import { attempt, reportError } from "./notify";
import { LOCAL, loadWhere, sameWhere, saveWhere } from "./where";
import type { Where } from "./where";

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
  /** Whose deployments the list shows and the actions change. */
  readonly where: Where;
  /** The kubeconfig's contexts the picker offers (null until read). */
  readonly contexts: Contexts | null;
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
  where: LOCAL,
  contexts: null,
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

/** The browser's localStorage, or null where the page may not use it. */
function browserStorage(): Storage | null {
  try {
    return typeof window === "undefined" ? null : window.localStorage;
  } catch {
    return null;
  }
}

/** The sidebar's shared state and the calls that change it. */
export class SidebarStore {
  private state: SidebarState = { ...EMPTY, where: loadWhere(browserStorage()) };
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
    const { where } = this.state;
    try {
      const [server, deployments] = await Promise.all([api.server(), api.deployments(where)]);
      if (!sameWhere(where, this.state.where)) return; // the picker moved on meanwhile
      const history = appendHistory(this.state.history, deployments);
      this.set({ server, deployments, history, unreachable: false });
    } catch (error) {
      if (!sameWhere(where, this.state.where)) return;
      if (!this.state.unreachable) reportError("Could not read the deployments", error);
      this.set({ unreachable: true });
    }
  }

  /** Show and steer the deployments of `where` from now on, and keep the choice. */
  async choose(where: Where): Promise<void> {
    if (sameWhere(where, this.state.where)) return;
    saveWhere(browserStorage(), where);
    this.set({ where, deployments: [], history: new Map(), unreachable: false });
    await this.polling; // an answer for the former choice is dropped when it comes
    await this.poll();
  }

  /** The kubeconfig's contexts, for the picker (a lab without any lists none, with why). */
  async loadContexts(): Promise<void> {
    const contexts = await attempt("Could not list the clusters", api.contexts);
    if (contexts) this.set({ contexts });
  }

  /** Everything again: server, deployments, keys and the catalog. */
  async refresh(): Promise<void> {
    this.set({ refreshes: this.state.refreshes + 1 });
    await Promise.all([this.poll(), this.loadKeys(), this.loadContexts()]);
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

  /** After a deploy: the list, and the keys when the deploy minted one. */
  async deployed(result: DeployResult): Promise<void> {
    await Promise.all([this.poll(), result.key ? this.loadKeys() : null]);
  }

  /** After a delete: the list, and the keys (the server revoked those its deploy minted). */
  async deleted(): Promise<void> {
    await Promise.all([this.poll(), this.loadKeys()]);
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
