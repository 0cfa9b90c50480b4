// The editor's actions: validate, test run, save and load versions, deploy, undo and redo,
// layout and fit; the host's last status line beside them.
import { useState, type ReactNode } from "react";
import type { VersionInfo } from "./types";

export interface ToolbarProps {
  busy: string | null;
  status: string;
  versions: readonly VersionInfo[];
  canUndo: boolean;
  canRedo: boolean;
  onValidate: () => void;
  onRun: () => void;
  onSave: (message: string) => void;
  onOpenVersions: () => void;
  onLoad: (version: number | string) => void;
  onDeploy: () => void;
  onUndo: () => void;
  onRedo: () => void;
  onLayout: () => void;
  onFit: () => void;
}

type Popup = "save" | "load" | null;

export function Toolbar(props: ToolbarProps) {
  const [popup, setPopup] = useState<Popup>(null);
  const toggle = (which: Popup) => {
    setPopup((open) => (open === which ? null : which));
  };
  const busy = props.busy !== null;
  return (
    <div className="nstarx-flow__toolbar" role="toolbar" aria-label="Pipeline">
      <Button
        id="flow-validate"
        title="Validate the pipeline again"
        disabled={busy}
        onClick={props.onValidate}
      >
        Validate
      </Button>
      <Button
        id="flow-run"
        title="Run the sample record through the pipeline"
        disabled={busy}
        onClick={props.onRun}
      >
        Test run
      </Button>
      <Button
        id="flow-save"
        title="Save a new version in the registry"
        disabled={busy}
        onClick={() => {
          toggle("save");
        }}
      >
        Save version
      </Button>
      <Button
        id="flow-load"
        title="Load a saved version"
        disabled={busy}
        onClick={() => {
          toggle("load");
          if (popup !== "load") props.onOpenVersions();
        }}
      >
        Load version
      </Button>
      <Button
        id="flow-deploy"
        title="Deploy the pipeline as an endpoint"
        disabled={busy}
        onClick={props.onDeploy}
      >
        Deploy
      </Button>
      <span className="nstarx-flow__toolbar-gap" />
      <Button id="flow-undo" title="Undo (Ctrl+Z)" disabled={!props.canUndo} onClick={props.onUndo}>
        Undo
      </Button>
      <Button
        id="flow-redo"
        title="Redo (Ctrl+Shift+Z)"
        disabled={!props.canRedo}
        onClick={props.onRedo}
      >
        Redo
      </Button>
      <Button id="flow-layout" title="Lay the nodes out left to right" onClick={props.onLayout}>
        Auto layout
      </Button>
      <Button id="flow-fit" title="Fit the pipeline in view" onClick={props.onFit}>
        Fit view
      </Button>
      <span className="nstarx-flow__status" data-testid="flow-status" role="status">
        {props.busy ? `${props.busy}…` : props.status}
      </span>
      {popup === "save" && (
        <SavePopup
          onSave={(message) => {
            setPopup(null);
            props.onSave(message);
          }}
        />
      )}
      {popup === "load" && (
        <LoadPopup
          versions={props.versions}
          onLoad={(version) => {
            setPopup(null);
            props.onLoad(version);
          }}
        />
      )}
    </div>
  );
}

interface ButtonProps {
  id: string;
  title: string;
  disabled?: boolean;
  onClick: () => void;
  children: ReactNode;
}

function Button({ id, title, disabled, onClick, children }: ButtonProps) {
  return (
    <button type="button" data-testid={id} title={title} disabled={disabled} onClick={onClick}>
      {children}
    </button>
  );
}

function SavePopup({ onSave }: { onSave: (message: string) => void }) {
  const [message, setMessage] = useState("");
  return (
    <form
      className="nstarx-flow__popup"
      onSubmit={(event) => {
        event.preventDefault();
        onSave(message);
      }}
    >
      <label htmlFor="nstarx-flow-save-message">What changed?</label>
      <input
        id="nstarx-flow-save-message"
        data-testid="flow-save-message"
        type="text"
        autoFocus
        value={message}
        onChange={(event) => {
          setMessage(event.target.value);
        }}
      />
      <button type="submit" data-testid="flow-save-confirm">
        Save
      </button>
    </form>
  );
}

interface LoadPopupProps {
  versions: readonly VersionInfo[];
  onLoad: (version: number | string) => void;
}

function LoadPopup({ versions, onLoad }: LoadPopupProps) {
  const latest = versions[versions.length - 1];
  const [chosen, setChosen] = useState<string>(latest ? String(latest.version) : "");
  const picked = versions.find((v) => String(v.version) === chosen) ?? latest;
  return (
    <form
      className="nstarx-flow__popup"
      onSubmit={(event) => {
        event.preventDefault();
        if (picked) onLoad(picked.version);
      }}
    >
      {versions.length === 0 ? (
        <span>No saved version yet.</span>
      ) : (
        <>
          <label htmlFor="nstarx-flow-load-version">Version</label>
          <select
            id="nstarx-flow-load-version"
            data-testid="flow-load-select"
            value={picked ? String(picked.version) : ""}
            onChange={(event) => {
              setChosen(event.target.value);
            }}
          >
            {versions.map((v) => (
              <option key={String(v.version)} value={String(v.version)}>
                {`v${String(v.version)}${v.message ? ` — ${v.message}` : ""}`}
              </option>
            ))}
          </select>
          <button type="submit" data-testid="flow-load-confirm">
            Load
          </button>
        </>
      )}
    </form>
  );
}
