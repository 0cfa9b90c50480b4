// A Copy button: the clipboard when the page may use it, else a selected text box to copy by hand.
import { useEffect, useRef, useState } from "react";

type Outcome = "idle" | "copied" | "manual";

/** `text` is the text, or a function that fetches it (the key comes from the kernel on demand). */
export function CopyButton({
  text,
  title,
}: {
  text: string | (() => Promise<string>);
  title: string;
}) {
  const [outcome, setOutcome] = useState<Outcome>("idle");
  const [fetched, setFetched] = useState("");
  const box = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    if (outcome === "manual") box.current?.select();
    if (outcome !== "copied") return undefined;
    const timer = window.setTimeout(() => {
      setOutcome("idle");
    }, 1500);
    return () => {
      window.clearTimeout(timer);
    };
  }, [outcome]);

  const copy = async () => {
    const value = typeof text === "string" ? text : await text();
    setFetched(value);
    try {
      // Undefined outside secure contexts (plain http on another host): that throws here too.
      await navigator.clipboard.writeText(value);
      setOutcome("copied");
    } catch {
      setOutcome("manual");
    }
  };

  return (
    <span className="nstarx-card__copy">
      <button type="button" title={title} onClick={() => void copy()}>
        {outcome === "copied" ? "Copied" : "Copy"}
      </button>
      {outcome === "manual" && (
        <textarea
          ref={box}
          className="nstarx-card__manual-copy"
          readOnly
          value={fetched}
          title="Press Ctrl+C (⌘C) to copy"
          aria-label="Text to copy"
          onBlur={() => {
            setOutcome("idle");
          }}
        />
      )}
    </span>
  );
}
