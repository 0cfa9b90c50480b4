// One registered model: a summary line that expands into its versions.
import { memo } from "react";
import type { ModelSummary } from "../api";
import { ModelVersions } from "./ModelVersions";

/** An ISO timestamp in local time as `YYYY-MM-DD HH:MM` (the notebooks' format, whatever the
 * browser's locale), or a dash. `dateOnly` leaves out the time. */
export function formatDate(iso: string | null, dateOnly = false): string {
  if (iso === null) return "–";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  const two = (n: number) => String(n).padStart(2, "0");
  const day = `${String(when.getFullYear())}-${two(when.getMonth() + 1)}-${two(when.getDate())}`;
  return dateOnly ? day : `${day} ${two(when.getHours())}:${two(when.getMinutes())}`;
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
          {model.created === null ? "" : formatDate(model.created, true)}
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
