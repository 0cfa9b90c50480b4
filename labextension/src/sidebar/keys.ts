// Minting and revoking API keys, shared by the Keys section and the palette command.
import { Dialog, showDialog } from "@jupyterlab/apputils";
import { api } from "../api";
import type { KeyCreated, KeyInfo } from "../api";
import { attempt } from "./notify";
import { parseScopes, scopeProblem } from "./scopes";
import type { SidebarStore } from "./store";

/** Mint a key and list it; the answer carries the key itself, to show once. */
export async function createKey(
  store: SidebarStore,
  name: string,
  scopesText: string,
): Promise<KeyCreated | undefined> {
  const scopes = parseScopes(scopesText);
  const problem = scopes === null ? "give at least one scope" : scopeProblem(scopes);
  const created = await attempt("Could not create the API key", () =>
    scopes === null || problem !== null
      ? Promise.reject(new Error(problem ?? "give at least one scope"))
      : api.createKey({ name, scopes }),
  );
  if (created) store.upsertKey(created.info);
  return created;
}

/** Revoke a key after the user confirms it. */
export async function revokeKey(store: SidebarStore, key: KeyInfo): Promise<void> {
  const label = key.name ? `${key.name} (${key.prefix}…)` : `${key.prefix}…`;
  const confirmed = await showDialog({
    title: "Revoke the API key?",
    body: `Calls with the key ${label} will be refused from now on. This cannot be undone.`,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: "Revoke" })],
  });
  if (!confirmed.button.accept) return;
  const revoked = await attempt(`Could not revoke the key ${label}`, () => api.revokeKey(key.id));
  if (revoked) store.upsertKey(revoked);
}
