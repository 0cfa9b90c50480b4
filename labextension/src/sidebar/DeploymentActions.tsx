// What can be done to a deployment: promote or roll back its canary, copy how to call it,
// read its events, delete it (after a confirmation).
import { Dialog, showDialog } from "@jupyterlab/apputils";
import { useState } from "react";
import { api } from "../api";
import type { DeploymentInfo } from "../api";
import { copyText } from "./clipboard";
import { useSidebarEnv } from "./context";
import { attempt } from "./notify";
import { whereLabel } from "./where";
import type { Where } from "./where";

async function confirmDelete(name: string, where: Where): Promise<boolean> {
  const body =
    where.target === "local"
      ? `The deployment ${name} stops serving and is forgotten; its keys stay.`
      : `The InferenceService ${name} is deleted from ${whereLabel(where)}.`;
  const result = await showDialog({
    title: `Delete ${name}?`,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: "Delete" })],
  });
  return result.button.accept;
}

/** The action buttons of one deployment (of the picker's choice: the list shows no other). */
export function DeploymentActions({ deployment }: { deployment: DeploymentInfo }) {
  const { store, openLogs } = useSidebarEnv();
  const [busy, setBusy] = useState(false);
  const { name } = deployment;
  const canary = deployment.stable_revision !== null;
  const where = (): Where => store.getState().where;

  const run = async (what: string, call: () => Promise<DeploymentInfo>) => {
    setBusy(true);
    const answer = await attempt(`Could not ${what} ${name}`, call);
    if (answer) store.update(answer);
    setBusy(false);
    await store.poll();
  };
  const remove = async () => {
    const from = where();
    if (!(await confirmDelete(name, from))) return;
    setBusy(true);
    await attempt(`Could not delete ${name}`, () => api.remove(name, from));
    setBusy(false);
    await store.deleted();
  };
  const copy = async (which: "curl" | "python") => {
    const snippets = await attempt(`Could not get the snippets of ${name}`, () =>
      api.snippets(name, where()),
    );
    if (snippets)
      copyText(snippets[which], which === "curl" ? "The cURL command" : "The Python code");
  };
  const logs = async () => {
    const answer = await attempt(`Could not read the logs of ${name}`, () =>
      api.logs(name, where()),
    );
    if (answer) openLogs(answer);
  };

  return (
    <div className="nstarx-sidebar__actions" role="group" aria-label={`Actions on ${name}`}>
      {canary && (
        <>
          <button
            type="button"
            disabled={busy}
            onClick={() => void run("promote", () => api.promote(name, where()))}
            title={`Send all traffic of ${name} to the canary`}
          >
            Promote
          </button>
          <button
            type="button"
            disabled={busy}
            onClick={() => void run("roll back", () => api.rollback(name, where()))}
            title={`Send all traffic of ${name} back to the stable revision`}
          >
            Roll back
          </button>
        </>
      )}
      <button type="button" onClick={() => void copy("curl")} title={`Copy a cURL call of ${name}`}>
        Copy cURL
      </button>
      <button
        type="button"
        onClick={() => void copy("python")}
        title={`Copy Python calling ${name}`}
      >
        Copy Python
      </button>
      <button type="button" onClick={() => void logs()} title={`Open the logs of ${name}`}>
        Logs
      </button>
      <button
        type="button"
        className="nstarx-sidebar__danger"
        disabled={busy}
        onClick={() => void remove()}
        title={`Delete ${name}`}
      >
        Delete
      </button>
    </div>
  );
}
