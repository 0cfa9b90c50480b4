// One registered model: a summary line that expands into its versions.
import { memo } from "react";
import type { ModelSummary } from "../api";
import { ModelVersions } from "./ModelVersions";

/** An ISO timestamp as the user's locale writes it, or a dash. */
export function formatDate(iso: string | null): string {
  return iso === null ? "–" : new Date(iso).toLocaleString();
}

/** `key=value` chips (tags) or `alias → version` chips. */
export function Chips({ items, label }: { items: readonly string[]; label: string }) {
  if (items.length === 0) return null;
  return (
    <ul className="nstarx-sidebar__chips" aria-label={label}>
      {items.map((item) => (
        <li key={item}>{item}</li>
      ))}
    </ul>
  );
}

interface ModelRowProps {
  readonly model: ModelSummary;
  readonly expanded: boolean;
  readonly onToggle: (name: string) => void;
}

/** The model's name, latest version, aliases, tags and creation date; its versions below. */
export const ModelRow = memo(function ModelRow({ model, expanded, onToggle }: ModelRowProps) {
  const panelId = `nstarx-model-${model.name}`;
  const aliases = Object.entries(model.aliases).map(([alias, v]) => `@${alias} → v${v}`);
  const tags = Object.entries(model.tags).map(([k, v]) => `${k}=${v}`);
  return (
    <li className="nstarx-sidebar__model">
      <button
        type="button"
        className="nstarx-sidebar__model-toggle"
        aria-expanded={expanded}
        aria-controls={panelId}
        aria-label={`Model ${model.name}`}
        onClick={() => {
          onToggle(model.name);
        }}
      >
        <span className="nstarx-sidebar__caret" aria-hidden="true">
          {expanded ? "▾" : "▸"}
        </span>
        <span className="nstarx-sidebar__model-name">{model.name}</span>
        {model.latest_version !== null && (
          <span className="nstarx-sidebar__version-tag">{`v${model.latest_version}`}</span>
        )}
        <span className="nstarx-sidebar__muted" title={formatDate(model.created)}>
          {model.created === null ? "" : new Date(model.created).toLocaleDateString()}
        </span>
      </button>
      <Chips items={aliases} label={`Aliases of ${model.name}`} />
      <Chips items={tags} label={`Tags of ${model.name}`} />
      {expanded && (
        <div id={panelId}>
          <ModelVersions model={model.name} />
        </div>
      )}
    </li>
  );
});
