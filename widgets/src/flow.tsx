// The pipeline editor widget: anywidget's entry point. It hosts the Jupyter-agnostic canvas
// (./flow/) on the FlowEditor model: traits in, `spec` out, toolbar actions as commands.
import type { AnyModel, Experimental, Render } from "@anywidget/types";
import "@xyflow/react/dist/style.css";
import { useCallback, useMemo } from "react";
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
import { useTrait } from "./model";

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
function useConverted<K extends keyof FlowState, T>(
  model: FlowModel,
  key: K,
  convert: (value: FlowState[K]) => T,
): T {
  const raw = useTrait(model, key);
  return useMemo(() => convert(raw), [raw, convert]);
}

function same<T>(value: T): T {
  return value;
}

/** How long a command may take: saving to the registry, a test run or a deploy take seconds
 * on a busy machine (anywidget's own default, 3 s, cut them off: "signal timed out"). */
const COMMAND_TIMEOUT_MS = 120_000;

/** The toolbar's requests as the Python commands; an `{error}` answer becomes a rejection. */
function commands(experimental: Experimental): FlowActions {
  const call = async (name: string, msg: object = {}) => {
    const [answer] = await experimental.invoke<unknown>(name, msg, {
      signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS),
    });
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
  const spec = useConverted(model, "spec", toPipelineSpec);
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
      library={useConverted(model, "library", toLibrary)}
      kinds={useConverted(model, "kinds", toKinds)}
      portRules={useConverted(model, "port_rules", toPortRules)}
      problems={useConverted(model, "problems", toProblems)}
      nodePorts={useConverted(model, "node_ports", toNodePorts)}
      sample={useConverted(model, "sample", toRecord)}
      runResult={useConverted(model, "run_result", toRunResult)}
      versions={useConverted(model, "versions", toVersions)}
      deployment={useConverted(model, "deployment", toDeployment)}
      status={useConverted(model, "status", same)}
      height={useConverted(model, "height", same)}
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
