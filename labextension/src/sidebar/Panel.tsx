// The sidebar's content: the server header, then the catalog, the deployments and the keys.
import { useEffect } from "react";
import { SidebarContext } from "./context";
import type { SidebarEnv } from "./context";
import { DeploymentsSection } from "./DeploymentsSection";
import { Header } from "./Header";
import { KeysSection } from "./KeysSection";
import { ModelsSection } from "./ModelsSection";
import { usePoll } from "./usePoll";

/** How often the server's state and the deployments' figures are read while visible. */
export const POLL_INTERVAL_MS = 3000;

interface PanelProps {
  readonly env: SidebarEnv;
  /** Whether the panel is shown: it polls only then. */
  readonly active: boolean;
}

/** The whole panel: polls the deployments while `active`; the keys and the kubeconfig's
 * contexts once when it mounts. */
export function Panel({ env, active }: PanelProps) {
  const { store } = env;
  usePoll(() => store.poll(), POLL_INTERVAL_MS, active);
  useEffect(() => {
    void store.loadKeys();
    void store.loadContexts();
  }, [store]);
  return (
    <SidebarContext.Provider value={env}>
      <Header />
      <div className="nstarx-sidebar__body">
        <ModelsSection />
        <DeploymentsSection />
        <KeysSection />
      </div>
    </SidebarContext.Provider>
  );
}
