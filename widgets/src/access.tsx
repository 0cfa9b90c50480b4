// How to call the deployment: endpoint, API key, and the cURL and Python snippets.
import { useState } from "react";
import { CopyButton } from "./copy";
import { reveal, useTrait, type CardModel, type Secret } from "./model";

const SNIPPETS = [
  { key: "curl", label: "cURL" },
  { key: "python", label: "Python" },
] as const;

type SnippetKey = (typeof SNIPPETS)[number]["key"];

function KeyRow({ hint, secret, auth, shown, onToggle, fetchKey }: KeyRowProps) {
  if (!auth) return <span className="nstarx-card__note">no key: this deployment is open</span>;
  if (!hint) {
    return (
      <span className="nstarx-card__note">
        key shown only when created — create one with <code>deployment.create_key()</code>
      </span>
    );
  }
  return (
    <>
      <code className="nstarx-card__key" title="API key">
        {shown && secret ? secret.api_key : hint}
      </code>
      <button
        type="button"
        title={shown ? "Hide the API key" : "Show the API key"}
        onClick={onToggle}
      >
        {shown ? "Hide" : "Show"}
      </button>
      <CopyButton text={fetchKey} title="Copy the API key" />
    </>
  );
}

interface KeyRowProps {
  hint: string;
  secret: Secret | null;
  auth: boolean;
  shown: boolean;
  onToggle: () => void;
  fetchKey: () => Promise<string>;
}

export function Access({ model }: { model: CardModel }) {
  const endpoint = useTrait(model, "endpoint");
  const hint = useTrait(model, "key_hint");
  const auth = useTrait(model, "auth");
  // Synced snippets hold only the key's hint; the whole ones come from the kernel on demand.
  const masked: Record<SnippetKey, string> = {
    curl: useTrait(model, "curl"),
    python: useTrait(model, "python"),
  };
  const [tab, setTab] = useState<SnippetKey>("curl");
  const [shown, setShown] = useState(false);
  const [secret, setSecret] = useState<Secret | null>(null);

  const fetchSecret = async (): Promise<Secret | null> => {
    if (!hint) return null;
    const answer = secret ?? (await reveal(model));
    setSecret(answer);
    return answer;
  };
  const wholeSnippet = async (key: SnippetKey) => (await fetchSecret())?.[key] ?? masked[key];
  const displayed = shown && secret ? secret[tab] : masked[tab];
  const label = SNIPPETS.find((s) => s.key === tab)?.label ?? tab;

  return (
    <section className="nstarx-card__access">
      <div className="nstarx-card__row">
        <span className="nstarx-card__label">Endpoint</span>
        <code className="nstarx-card__endpoint" title="Endpoint URL">
          {endpoint}
        </code>
        <CopyButton text={endpoint} title="Copy the endpoint URL" />
      </div>
      <div className="nstarx-card__row">
        <span className="nstarx-card__label">API key</span>
        <KeyRow
          hint={hint}
          secret={secret}
          auth={auth}
          shown={shown}
          onToggle={() => {
            if (!shown) void fetchSecret();
            setShown((s) => !s);
          }}
          fetchKey={async () => (await fetchSecret())?.api_key ?? hint}
        />
      </div>
      <div className="nstarx-card__tabs" role="tablist" aria-label="Request snippets">
        {SNIPPETS.map((s) => (
          <button
            key={s.key}
            type="button"
            role="tab"
            aria-selected={tab === s.key}
            title={`Show the ${s.label} snippet`}
            onClick={() => {
              setTab(s.key);
            }}
          >
            {s.label}
          </button>
        ))}
        <span className="nstarx-card__spacer" />
        <CopyButton text={() => wholeSnippet(tab)} title={`Copy the ${label} snippet`} />
      </div>
      <pre className="nstarx-card__snippet" role="tabpanel" title={`${label} snippet`}>
        {displayed}
      </pre>
    </section>
  );
}
