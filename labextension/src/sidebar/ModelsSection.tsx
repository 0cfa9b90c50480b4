// The registry's catalog, searched on the server as the user types (debounced).
import { useCallback, useEffect, useState } from "react";
import { api } from "../api";
import type { ModelSummary } from "../api";
import { useSidebarEnv } from "./context";
import { ModelRow } from "./ModelRow";
import { attempt } from "./notify";
import { Section } from "./Section";
import { useStore } from "./store";

const SEARCH_DEBOUNCE_MS = 300;

function useDebounced(value: string, delayMs: number): string {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => {
      setSettled(value);
    }, delayMs);
    return () => {
      window.clearTimeout(timer);
    };
  }, [value, delayMs]);
  return settled;
}

/** The catalog: one request per (debounced) search, versions only when a model is expanded. */
export function ModelsSection() {
  const { store } = useSidebarEnv();
  const { refreshes } = useStore(store);
  const [search, setSearch] = useState("");
  const query = useDebounced(search.trim(), SEARCH_DEBOUNCE_MS);
  const [models, setModels] = useState<readonly ModelSummary[] | null>(null);
  const [expanded, setExpanded] = useState<ReadonlySet<string>>(new Set());
  const toggle = useCallback((name: string) => {
    setExpanded((before) => {
      const after = new Set(before);
      if (!after.delete(name)) after.add(name);
      return after;
    });
  }, []);

  useEffect(() => {
    let stale = false;
    void attempt("Could not list the registered models", () => api.models(query)).then((answer) => {
      if (answer && !stale) setModels(answer);
    });
    return () => {
      stale = true;
    };
  }, [query, refreshes]);

  return (
    <Section id="nstarx-models" title="Models" count={models?.length}>
      <input
        type="search"
        className="nstarx-sidebar__search jp-mod-styled"
        placeholder="Search models, tags, aliases"
        aria-label="Search models"
        value={search}
        onChange={(event) => {
          setSearch(event.currentTarget.value);
        }}
      />
      {models === null ? (
        <p className="nstarx-sidebar__empty">Loading the registry…</p>
      ) : models.length === 0 ? (
        <p className="nstarx-sidebar__empty">
          {query ? `No model matches “${query}”.` : "No registered models yet."}
        </p>
      ) : (
        <ul className="nstarx-sidebar__models" aria-label="Registered models">
          {models.map((model) => (
            <ModelRow
              key={model.name}
              model={model}
              expanded={expanded.has(model.name)}
              onToggle={toggle}
            />
          ))}
        </ul>
      )}
    </Section>
  );
}
