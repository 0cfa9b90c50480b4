// A freshly minted API key: shown this once, with a copy button; the server keeps only a digest.
import { copyText } from "./clipboard";

interface OnceKeyProps {
  readonly secret: string;
  readonly label: string;
  readonly onDismiss?: () => void;
}

/** The key in full, a copy button and the warning that it will not be shown again. */
export function OnceKey({ secret, label, onDismiss }: OnceKeyProps) {
  return (
    <div className="nstarx-sidebar__once-key" role="status" aria-label={label}>
      <div className="nstarx-sidebar__secret-line">
        <code className="nstarx-sidebar__secret" data-testid="once-key" title={secret}>
          {secret}
        </code>
        <button
          type="button"
          className="jp-Button jp-mod-styled jp-mod-accept"
          onClick={() => {
            copyText(secret, "The API key");
          }}
        >
          Copy key
        </button>
      </div>
      <p className="nstarx-sidebar__note">
        Copy this key now: it will not be shown again (only its prefix is kept).
      </p>
      {onDismiss && (
        <div className="nstarx-sidebar__row">
          <button type="button" className="jp-Button jp-mod-styled" onClick={onDismiss}>
            Done
          </button>
        </div>
      )}
    </div>
  );
}
