// The component library, searchable and grouped by kind: drag an item onto the canvas, or
// double-click it (or press Enter on it) to add it at the centre.
import { memo, useMemo, useState, type DragEvent } from "react";
import type { ComponentInfo, KindInfo } from "./types";

/** The drag payload's type: the component's library name. */
export const DRAG_TYPE = "application/x-nstarx-component";

interface PaletteProps {
  library: readonly ComponentInfo[];
  kinds: readonly KindInfo[];
  kindIndex: ReadonlyMap<string, number>;
  onAdd: (component: string) => void;
}

export const Palette = memo(function Palette({ library, kinds, kindIndex, onAdd }: PaletteProps) {
  const [query, setQuery] = useState("");
  const groups = useMemo(() => {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    const matches = library.filter((info) => {
      const text = `${info.name} ${info.title} ${info.description} ${info.kind}`.toLowerCase();
      return words.every((word) => text.includes(word));
    });
    const known = new Set(kinds.map((kind) => kind.kind));
    const sections = [...kinds, ...otherKinds(matches, known)];
    return sections
      .map((kind) => ({ ...kind, items: matches.filter((info) => info.kind === kind.kind) }))
      .filter((group) => group.items.length > 0);
  }, [library, kinds, query]);

  const onDragStart = (event: DragEvent, name: string) => {
    event.dataTransfer.setData(DRAG_TYPE, name);
    event.dataTransfer.setData("text/plain", name);
    event.dataTransfer.effectAllowed = "move";
  };
  return (
    <aside className="nstarx-flow__palette" aria-label="Components">
      <input
        type="search"
        className="nstarx-flow__search"
        placeholder="Search components"
        aria-label="Search components"
        data-testid="palette-search"
        value={query}
        onChange={(event) => {
          setQuery(event.target.value);
        }}
      />
      {groups.length === 0 && <p className="nstarx-flow__help">No component matches.</p>}
      {groups.map((group) => (
        <section key={group.kind} className="nstarx-flow__palette-group">
          <h4>{group.title}</h4>
          {group.items.map((info) => (
            <div
              key={info.name}
              className={`nstarx-flow__palette-item nstarx-flow__kind-${String(kindIndex.get(info.kind) ?? -1)}`}
              data-testid={`palette-${info.name}`}
              role="button"
              tabIndex={0}
              draggable
              title={`${info.description}\n(drag onto the canvas, or double-click)`}
              onDragStart={(event) => {
                onDragStart(event, info.name);
              }}
              onDoubleClick={() => {
                onAdd(info.name);
              }}
              onKeyDown={(event) => {
                if (event.key === "Enter" || event.key === " ") {
                  event.preventDefault();
                  onAdd(info.name);
                }
              }}
            >
              <span className="nstarx-flow__palette-title">{info.title}</span>
              <span className="nstarx-flow__palette-name">{info.name}</span>
            </div>
          ))}
        </section>
      ))}
    </aside>
  );
});

function otherKinds(library: readonly ComponentInfo[], known: ReadonlySet<string>): KindInfo[] {
  const others = [...new Set(library.map((info) => info.kind))].filter((kind) => !known.has(kind));
  return others.map((kind) => ({ kind, title: kind }));
}
