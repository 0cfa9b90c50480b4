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

/** Seconds since the first render, counted while shown. */
function useElapsedSeconds(): number {
  const [seconds, setSeconds] = useState(0);
  useEffect(() => {
    const started = Date.now();
    const timer = window.setInterval(() => {
      setSeconds(Math.floor((Date.now() - started) / 1000));
    }, 1000);
    return () => {
      window.clearInterval(timer);
    };
  }, []);
  return seconds;
}

/** The catalog's first answer can take seconds: MLflow opens (or first creates) its store. */
function RegistryLoading() {
  const seconds = useElapsedSeconds();
  return (
    <p className="nstarx-sidebar__empty" role="status" aria-label="Loading the registry">
      <span className="nstarx-sidebar__spinner" aria-hidden="true" />
      Loading the registry…{seconds >= 2 && ` ${String(seconds)} s`}
      {seconds >= 3 && (
        <span className="nstarx-sidebar__note">
          {" "}
          The first call opens the MLflow store (a new one is created on first use).
        </span>
      )}
    </p>
  );
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
        placeholder="Search models"
        title="Search model names, tags and aliases"
        aria-label="Search models"
        value={search}
        onChange={(event) => {
          setSearch(event.currentTarget.value);
        }}
      />
      {models === null ? (
        <RegistryLoading />
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
