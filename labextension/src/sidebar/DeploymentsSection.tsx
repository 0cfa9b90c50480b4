// The deployments on the local server or the chosen cluster, each as a card.
import { useSidebarEnv } from "./context";
import { DeploymentCard } from "./DeploymentCard";
import { Section } from "./Section";
import { useStore } from "./store";
import { whereLabel } from "./where";

/** Every deployment, with the figures the polls gathered. */
export function DeploymentsSection() {
  const { store } = useSidebarEnv();
  const { deployments, history, server, where, unreachable } = useStore(store);
  const cluster = where.target !== "local";
  return (
    <Section id="nstarx-deployments" title="Deployments" count={deployments.length}>
      {deployments.length === 0 ? (
        <p className="nstarx-sidebar__empty">
          {cluster
            ? unreachable
              ? `Cannot read the InferenceServices of ${whereLabel(where)}.`
              : `No InferenceServices in ${whereLabel(where)} yet: deploy a model version from the list above.`
            : server?.running
              ? "Nothing deployed yet: deploy a model version from the list above."
              : "The local server is not running."}
        </p>
      ) : (
        <ul className="nstarx-sidebar__cards" aria-label="Deployments">
          {deployments.map((deployment) => (
            <li key={deployment.name}>
              <DeploymentCard deployment={deployment} history={history.get(deployment.name)} />
            </li>
          ))}
        </ul>
      )}
    </Section>
  );
}
