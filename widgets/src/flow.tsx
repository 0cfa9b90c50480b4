// The pipeline editor widget: anywidget's entry point. It hosts the Jupyter-agnostic canvas
// (./flow/) on the FlowEditor model: traits in, `spec` out, toolbar actions as commands.
import type { AnyModel, Experimental, Render } from "@anywidget/types";
import "@xyflow/react/dist/style.css";
import { useCallback, useMemo, useSyncExternalStore } from "react";
import { createRoot } from "react-dom/client";
import "../../labextension/src/flow/flow.css";
import {
  toDeployment,
  toKinds,
  toLibrary,
  toNodePorts,
  toPipelineSpec,
  toPortRules,
  toProblems,
  toRecord,
  toRunResult,
  toVersions,
} from "../../labextension/src/flow/coerce";
import { FlowCanvas } from "../../labextension/src/flow/FlowCanvas";
import type { FlowActions, PipelineSpec } from "../../labextension/src/flow/types";

/** The FlowEditor's synced traits (checked by ./flow/coerce before use). */
interface FlowState {
  spec: unknown;
  problems: unknown;
  node_ports: unknown;
  library: unknown;
  kinds: unknown;
  port_rules: unknown;
  sample: unknown;
  run_result: unknown;
  versions: unknown;
  deployment: unknown;
  status: string;
  height: number;
}

type FlowModel = AnyModel<FlowState>;

/** One synced trait, turned into its type once per change. */
function useTrait<K extends keyof FlowState, T>(
  model: FlowModel,
  key: K,
  convert: (value: FlowState[K]) => T,
): T {
  const subscribe = useCallback(
    (onChange: () => void) => {
      model.on(`change:${key}`, onChange);
      return () => {
        model.off(`change:${key}`, onChange);
      };
    },
    [model, key],
  );
  const raw = useSyncExternalStore(subscribe, () => model.get(key));
  return useMemo(() => convert(raw), [raw, convert]);
}

function same<T>(value: T): T {
  return value;
}

/** The toolbar's requests as the Python commands; an `{error}` answer becomes a rejection. */
function commands(experimental: Experimental): FlowActions {
  const call = async (name: string, msg: object = {}) => {
    const [answer] = await experimental.invoke<unknown>(name, msg);
    const error = toRecord(answer).error;
    if (typeof error === "string") throw new Error(error);
  };
  return {
    validate: () => call("_validate"),
    run: (sample) => call("_run", { sample }),
    save: (message) => call("_save", { message }),
    listVersions: () => call("_versions_list"),
    load: (version) => call("_load", { version }),
    deploy: () => call("_deploy"),
  };
}

function FlowEditor({ model, actions }: { model: FlowModel; actions: FlowActions }) {
  const spec = useTrait(model, "spec", toPipelineSpec);
  const onChange = useCallback(
    (next: PipelineSpec) => {
      model.set("spec", next);
      model.save_changes();
    },
    [model],
  );
  return (
    <FlowCanvas
      spec={spec}
      onChange={onChange}
      library={useTrait(model, "library", toLibrary)}
      kinds={useTrait(model, "kinds", toKinds)}
      portRules={useTrait(model, "port_rules", toPortRules)}
      problems={useTrait(model, "problems", toProblems)}
      nodePorts={useTrait(model, "node_ports", toNodePorts)}
      sample={useTrait(model, "sample", toRecord)}
      runResult={useTrait(model, "run_result", toRunResult)}
      versions={useTrait(model, "versions", toVersions)}
      deployment={useTrait(model, "deployment", toDeployment)}
      status={useTrait(model, "status", same)}
      height={useTrait(model, "height", same)}
      actions={actions}
    />
  );
}

const render: Render<FlowState> = ({ model, el, experimental }) => {
  const root = createRoot(el);
  root.render(<FlowEditor model={model} actions={commands(experimental)} />);
  return () => {
    root.unmount();
  };
};

export default { render };
