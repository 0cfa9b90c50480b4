// The pipeline document's content: the shared canvas on the file's text.
import { useCallback, useState, useSyncExternalStore } from "react";
import { FlowCanvas } from "../flow/FlowCanvas";
import type { PipelineSpec } from "../flow/types";
import { useModelChoices } from "./choices";
import { parse, serialize } from "./file";
import { useBackend } from "./useBackend";

/** The document's text as the editor sees it: read, written, watched. */
export interface TextSource {
  read: () => string;
  write: (text: string) => void;
  subscribe: (onChange: () => void) => () => void;
}

function Canvas({ spec, source }: { spec: PipelineSpec; source: TextSource }) {
  const onChange = useCallback(
    (next: PipelineSpec) => {
      source.write(serialize(next));
    },
    [source],
  );
  const backend = useBackend(spec, onChange);
  const choices = useModelChoices(backend.deployment?.name);
  return (
    <FlowCanvas
      spec={spec}
      onChange={onChange}
      library={backend.library}
      kinds={backend.kinds}
      portRules={backend.portRules}
      problems={backend.problems}
      nodePorts={backend.nodePorts}
      sample={backend.sample}
      runResult={backend.runResult}
      versions={backend.versions}
      deployment={backend.deployment}
      status={backend.status}
      height="100%"
      suppressShortcuts={false}
      fieldChoices={choices}
      actions={backend.actions}
    />
  );
}

/** The canvas, or why the file cannot be shown as a pipeline. */
export function PipelineEditor({ source }: { source: TextSource }) {
  const text = useSyncExternalStore(source.subscribe, source.read);
  const [parsed, setParsed] = useState(() => ({ text, result: parse(text) }));
  if (parsed.text !== text) {
    setParsed({ text, result: parse(text) });
  }
  const { result } = parsed;
  if ("error" in result) {
    return (
      <div className="nstarx-pipeline-doc__error" role="alert">
        <h3>This file cannot be shown as a pipeline</h3>
        <p>{result.error}</p>
        <p>Open it with the text editor (right-click, Open With, Editor) to fix it.</p>
      </div>
    );
  }
  return <Canvas spec={result.spec} source={source} />;
}
