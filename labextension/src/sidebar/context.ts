// What every section reaches without passing it down: the shared store and the lab's hooks.
import { createContext, useContext } from "react";
import type { Logs } from "../api";
import type { SidebarStore } from "./store";

/** The sidebar's environment: its store, and how to open things in the lab's main area. */
export interface SidebarEnv {
  readonly store: SidebarStore;
  readonly openLogs: (logs: Logs) => void;
}

export const SidebarContext = createContext<SidebarEnv | null>(null);

/** The environment the panel was rendered with. */
export function useSidebarEnv(): SidebarEnv {
  const env = useContext(SidebarContext);
  if (env === null) throw new Error("a sidebar section was rendered outside the panel");
  return env;
}
