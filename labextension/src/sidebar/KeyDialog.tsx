// The palette's "create an API key": ask for a name and scopes, then show the key once.
import { Dialog, InputDialog, showDialog } from "@jupyterlab/apputils";
import { createKey } from "./keys";
import { LAB_SCOPES_HINT, SCOPES_PLACEHOLDER, suggestedScopes } from "./scopes";
import { OnceKey } from "./OnceKey";
import type { SidebarStore } from "./store";

/** Two prompts, the call, and a dialog with the key and its copy button. */
export async function promptForKey(store: SidebarStore): Promise<void> {
  const name = await InputDialog.getText({
    title: "New API key: name",
    placeholder: "e.g. dashboard",
  });
  if (!name.button.accept) return;
  const scopes = await InputDialog.getText({
    title: "New API key: scopes",
    label: LAB_SCOPES_HINT,
    text: suggestedScopes(store.getState().deployments),
    placeholder: SCOPES_PLACEHOLDER,
  });
  if (!scopes.button.accept) return;
  const created = await createKey(store, (name.value ?? "").trim(), scopes.value ?? "");
  if (!created) return;
  await showDialog({
    title: `API key ${created.info.name || created.info.prefix}`,
    body: <OnceKey secret={created.key} label="New API key" />,
    buttons: [Dialog.okButton({ label: "Done" })],
  });
}
