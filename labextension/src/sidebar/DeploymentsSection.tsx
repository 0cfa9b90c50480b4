// The deployments on the local server, each as a card.
import { useSidebarEnv } from "./context";
import { DeploymentCard } from "./DeploymentCard";
import { Section } from "./Section";
import { useStore } from "./store";

/** Every deployment, with the figures the polls gathered. */
export function DeploymentsSection() {
  const { store } = useSidebarEnv();
  const { deployments, history, server } = useStore(store);
  return (
    <Section id="nstarx-deployments" title="Deployments" count={deployments.length}>
      {deployments.length === 0 ? (
        <p className="nstarx-sidebar__empty">
          {server?.running
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
