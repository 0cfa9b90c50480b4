// How to call the deployment: endpoint, API key, and the cURL and Python snippets.
import { useState } from "react";
import { CopyButton } from "./copy";
import { useTrait, type CardModel } from "./model";

const SNIPPETS = [
  { key: "curl", label: "cURL" },
  { key: "python", label: "Python" },
] as const;

type SnippetKey = (typeof SNIPPETS)[number]["key"];

function mask(key: string): string {
  return `${key.slice(0, 8)}…`;
}

function KeyRow({ apiKey, auth, shown, onToggle }: KeyRowProps) {
  if (!auth) return <span className="nstarx-card__note">no key: this deployment is open</span>;
  if (!apiKey) {
    return (
      <span className="nstarx-card__note">
        key shown only when created — create one with <code>deployment.create_key()</code>
      </span>
    );
  }
  return (
    <>
      <code className="nstarx-card__key" title="API key">
        {shown ? apiKey : mask(apiKey)}
      </code>
      <button
        type="button"
        title={shown ? "Hide the API key" : "Show the API key"}
        onClick={onToggle}
      >
        {shown ? "Hide" : "Show"}
      </button>
      <CopyButton text={apiKey} title="Copy the API key" />
    </>
  );
}

interface KeyRowProps {
  apiKey: string;
  auth: boolean;
  shown: boolean;
  onToggle: () => void;
}

export function Access({ model }: { model: CardModel }) {
  const endpoint = useTrait(model, "endpoint");
  const apiKey = useTrait(model, "api_key");
  const auth = useTrait(model, "auth");
  const snippets: Record<SnippetKey, string> = {
    curl: useTrait(model, "curl"),
    python: useTrait(model, "python"),
  };
  const [tab, setTab] = useState<SnippetKey>("curl");
  const [shown, setShown] = useState(false);

  const snippet = snippets[tab];
  // The snippets carry the whole key for copying; on screen it stays masked until shown.
  const displayed = apiKey && !shown ? snippet.split(apiKey).join(mask(apiKey)) : snippet;
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
          apiKey={apiKey}
          auth={auth}
          shown={shown}
          onToggle={() => {
            setShown((s) => !s);
          }}
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
        <CopyButton text={snippet} title={`Copy the ${label} snippet`} />
      </div>
      <pre className="nstarx-card__snippet" role="tabpanel" title={`${label} snippet`}>
        {displayed}
      </pre>
    </section>
  );
}
