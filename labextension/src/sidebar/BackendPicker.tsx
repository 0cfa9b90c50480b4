// Where deployments run: "Local" or one of the kubeconfig's contexts, with its namespace. The
// deployments list, the deploy form and every action follow the choice.
import { useState } from "react";
import type { ClusterContext } from "../api";
import { useSidebarEnv } from "./context";
import { useStore } from "./store";
import { namespaceProblem } from "./where";
import type { Where } from "./where";

const LOCAL_VALUE = "local";
const PREFIX = "kserve:";

function optionValue(where: Where): string {
  return where.target === "local" ? LOCAL_VALUE : `${PREFIX}${where.context ?? ""}`;
}

/** The namespace field: applied on Enter or when it loses the focus, if it is a valid name.
 * Keyed by the choice, so another context's namespace starts a fresh draft. */
function NamespaceField({ where }: { where: Where }) {
  const { store } = useSidebarEnv();
  const [draft, setDraft] = useState(where.namespace ?? "");
  const problem = namespaceProblem(draft.trim());
  const apply = () => {
    const namespace = draft.trim();
    if (problem === null && namespace !== where.namespace) {
      void store.choose({ ...where, namespace });
    }
  };
  return (
    <label className="nstarx-sidebar__namespace">
      <span>Namespace</span>
      <input
        className="jp-mod-styled"
        value={draft}
        maxLength={63}
        aria-label="Namespace"
        aria-invalid={problem !== null}
        title={problem ?? "The namespace of the InferenceServices"}
        onChange={(event) => {
          setDraft(event.currentTarget.value);
        }}
        onBlur={apply}
        onKeyDown={(event) => {
          if (event.key === "Enter") apply();
        }}
      />
    </label>
  );
}

/** The picker in the header. */
export function BackendPicker() {
  const { store } = useSidebarEnv();
  const { where, contexts } = useStore(store);
  const listed: readonly ClusterContext[] = contexts?.contexts ?? [];
  // Inside a pod without a kubeconfig: its own cluster, through its service account.
  const podNamespace = contexts?.in_cluster_namespace ?? null;
  const known =
    listed.some((c) => c.name === where.context) || (podNamespace !== null && !where.context);
  const choose = (value: string) => {
    if (value === LOCAL_VALUE) {
      void store.choose({ target: "local", context: null, namespace: null });
      return;
    }
    const name = value.slice(PREFIX.length);
    if (!name) {
      void store.choose({ target: "kserve", context: null, namespace: podNamespace });
      return;
    }
    const picked = listed.find((c) => c.name === name);
    void store.choose({ target: "kserve", context: name, namespace: picked?.namespace ?? null });
  };
  return (
    <div className="nstarx-sidebar__backend">
      <label>
        <span>Deploy to</span>
        <select
          className="jp-mod-styled"
          aria-label="Backend"
          value={optionValue(where)}
          onChange={(event) => {
            choose(event.currentTarget.value);
          }}
        >
          <option value={LOCAL_VALUE}>Local server</option>
          {podNamespace !== null && (
            <option value={PREFIX} title="The pod's service account">
              This cluster
            </option>
          )}
          {listed.map((c) => (
            <option
              key={c.name}
              value={`${PREFIX}${c.name}`}
              title={`cluster ${c.cluster || "?"}, namespace ${c.namespace}`}
            >
              {c.current ? `${c.name} (current)` : c.name}
            </option>
          ))}
          {where.target === "kserve" && !known && (
            <option value={optionValue(where)}>
              {`${where.context ?? "current context"} (not in the kubeconfig)`}
            </option>
          )}
        </select>
      </label>
      {where.target === "kserve" && (
        <NamespaceField key={`${where.context ?? ""}/${where.namespace ?? ""}`} where={where} />
      )}
      {contexts?.reason && (
        <span className="nstarx-sidebar__muted" role="note" title={contexts.reason}>
          {`No clusters: ${contexts.reason}`}
        </span>
      )}
    </div>
  );
}
