// The local model server's state, with a button to start it and one to refresh everything;
// below, the picker of where deployments run.
import { useState } from "react";
import { BackendPicker } from "./BackendPicker";
import { useSidebarEnv } from "./context";
import { useStore } from "./store";

function ServerState() {
  const { store } = useSidebarEnv();
  const { server, unreachable } = useStore(store);
  const [starting, setStarting] = useState(false);
  if (unreachable || server === null) {
    return (
      <span role="status" aria-label="Local server state">
        {unreachable ? "Cannot read the model server's state." : "Checking the local server…"}
      </span>
    );
  }
  if (server.running) {
    return (
      <span role="status" aria-label="Local server state">
        <span className="nstarx-sidebar__dot nstarx-sidebar__dot--on" aria-hidden="true" />
        {"Running at "}
        <code>{server.url ?? "?"}</code>
      </span>
    );
  }
  const start = async () => {
    setStarting(true);
    await store.startServer();
    setStarting(false);
  };
  return (
    <>
      <span role="status" aria-label="Local server state">
        <span className="nstarx-sidebar__dot" aria-hidden="true" />
        Not running
      </span>
      <button
        type="button"
        className="jp-Button jp-mod-styled jp-mod-accept"
        disabled={starting}
        onClick={() => void start()}
      >
        {starting ? "Starting…" : "Start server"}
      </button>
    </>
  );
}

/** The panel's title bar. */
export function Header() {
  const { store } = useSidebarEnv();
  return (
    <header className="nstarx-sidebar__header">
      <div className="nstarx-sidebar__title-row">
        <h2>Model serving</h2>
        <button
          type="button"
          className="nstarx-sidebar__icon-button"
          title="Refresh"
          aria-label="Refresh"
          onClick={() => void store.refresh()}
        >
          ⟳
        </button>
      </div>
      <div className="nstarx-sidebar__server">
        <ServerState />
      </div>
      <BackendPicker />
    </header>
  );
}
