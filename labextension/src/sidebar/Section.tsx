// A sidebar section: a real heading whose button folds the section's body away.
import { useState } from "react";
import type { ReactNode } from "react";

interface SectionProps {
  readonly id: string;
  readonly title: string;
  /** How many items the section lists, shown beside the title. */
  readonly count?: number;
  readonly children: ReactNode;
}

/** `<section>` labelled by its `<h3>`; the heading's button shows or hides the body. */
export function Section({ id, title, count, children }: SectionProps) {
  const [open, setOpen] = useState(true);
  return (
    <section className="nstarx-sidebar__section" aria-labelledby={`${id}-heading`}>
      <h3 id={`${id}-heading`}>
        <button
          type="button"
          className="nstarx-sidebar__section-toggle"
          aria-expanded={open}
          aria-controls={`${id}-body`}
          onClick={() => {
            setOpen(!open);
          }}
        >
          <span className="nstarx-sidebar__caret" aria-hidden="true">
            {open ? "▾" : "▸"}
          </span>
          {title}
          {count !== undefined && <span className="nstarx-sidebar__count">{count}</span>}
        </button>
      </h3>
      {open && <div id={`${id}-body`}>{children}</div>}
    </section>
  );
}
