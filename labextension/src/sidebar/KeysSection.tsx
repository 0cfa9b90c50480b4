// The API keys: listed by prefix (never in full), created with the key shown once, revoked.
import { useState } from "react";
import type { FormEvent } from "react";
import type { KeyCreated, KeyInfo } from "../api";
import { useSidebarEnv } from "./context";
import { createKey, revokeKey } from "./keys";
import {
  LAB_SCOPES_HINT,
  parseScopes,
  SCOPES_PLACEHOLDER,
  scopeProblem,
  suggestedScopes,
} from "./scopes";
import { OnceKey } from "./OnceKey";
import { Section } from "./Section";
import { useStore } from "./store";

function KeyRow({ apiKey }: { apiKey: KeyInfo }) {
  const { store } = useSidebarEnv();
  const active = apiKey.state === "active";
  const title = apiKey.name || apiKey.prefix;
  return (
    <li className="nstarx-sidebar__key" aria-label={`Key ${title}`}>
      <div className="nstarx-sidebar__key-line">
        <code title="The key's prefix: the key itself is shown only when it is made">
          {`${apiKey.prefix}…`}
        </code>
        <span className={`nstarx-sidebar__key-state nstarx-sidebar__key-state--${apiKey.state}`}>
          {apiKey.state}
        </span>
      </div>
      <div className="nstarx-sidebar__key-line nstarx-sidebar__muted">
        <span title={apiKey.name || undefined}>{apiKey.name || "(no name)"}</span>
        <button
          type="button"
          disabled={!active}
          aria-label={`Revoke ${title}`}
          onClick={() => void revokeKey(store, apiKey)}
        >
          Revoke
        </button>
      </div>
      <div className="nstarx-sidebar__key-scopes nstarx-sidebar__muted">
        {apiKey.scopes.join(" ")}
      </div>
    </li>
  );
}

function CreateKeyForm() {
  const { store } = useSidebarEnv();
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState(() => suggestedScopes(store.getState().deployments));
  const parsed = parseScopes(scopes);
  const problem = parsed === null ? null : scopeProblem(parsed);
  const [pending, setPending] = useState(false);
  const [created, setCreated] = useState<KeyCreated | null>(null);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setPending(true);
    const answer = await createKey(store, name.trim(), scopes);
    setPending(false);
    if (answer) {
      setCreated(answer);
      setName("");
    }
  };

  if (created) {
    const label = `New API key ${created.info.name || created.info.prefix}`;
    return (
      <OnceKey
        secret={created.key}
        label={label}
        onDismiss={() => {
          setCreated(null);
        }}
      />
    );
  }
  return (
    <form
      className="nstarx-sidebar__form"
      aria-label="Create an API key"
      onSubmit={(event) => void submit(event)}
    >
      <label>
        <span>Key name</span>
        <input
          className="jp-mod-styled"
          value={name}
          placeholder="e.g. dashboard"
          onChange={(event) => {
            setName(event.currentTarget.value);
          }}
        />
      </label>
      <label>
        <span>Scopes</span>
        <input
          className="jp-mod-styled"
          value={scopes}
          placeholder={SCOPES_PLACEHOLDER}
          title={LAB_SCOPES_HINT}
          aria-invalid={parsed === null || problem !== null}
          aria-describedby="nstarx-key-scopes-hint"
          onChange={(event) => {
            setScopes(event.currentTarget.value);
          }}
        />
      </label>
      <p
        id="nstarx-key-scopes-hint"
        className="nstarx-sidebar__muted"
        role={problem === null ? undefined : "alert"}
      >
        {problem ?? LAB_SCOPES_HINT}
      </p>
      <button
        type="submit"
        className="jp-Button jp-mod-styled jp-mod-accept"
        disabled={pending || parsed === null || problem !== null}
      >
        {pending ? "Creating…" : "Create key"}
      </button>
    </form>
  );
}

/** The key list and the form to mint one. */
export function KeysSection() {
  const { store } = useSidebarEnv();
  const { keys } = useStore(store);
  return (
    <Section id="nstarx-keys" title="API keys" count={keys.length}>
      {keys.length === 0 ? (
        <p className="nstarx-sidebar__empty">No API keys yet.</p>
      ) : (
        <ul className="nstarx-sidebar__keys" aria-label="API keys">
          {keys.map((key) => (
            <KeyRow key={key.id} apiKey={key} />
          ))}
        </ul>
      )}
      <CreateKeyForm />
    </Section>
  );
}
