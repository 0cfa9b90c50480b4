// The editor's data from the server extension: palette, validation, runs, versions, deploys.
import { Notification } from "@jupyterlab/apputils";
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import { api } from "../api";
import {
  toDeployment,
  toKinds,
  toLibrary,
  toNodePorts,
  toPortRules,
  toProblems,
  toRunResult,
  toVersions,
} from "../flow/coerce";
import type {
  ComponentInfo,
  DeploymentInfo,
  FlowActions,
  KindInfo,
  NodePorts,
  PipelineSpec,
  PortRules,
  Problem,
  RunResult,
  VersionInfo,
} from "../flow/types";

/** How long edits gather before the server validates them. */
const CHECK_DELAY_MS = 250;

interface Palette {
  library: ComponentInfo[];
  kinds: KindInfo[];
  portRules: PortRules;
}

let palette: Promise<Palette> | null = null;

/** The component library, asked once per page (custom components need a reload to appear). */
function loadPalette(): Promise<Palette> {
  palette ??= api.library().then(
    (found) => ({
      library: toLibrary(found.library),
      kinds: toKinds(found.kinds),
      portRules: toPortRules(found.port_rules),
    }),
    (error: unknown) => {
      palette = null;
      throw error;
    },
  );
  return palette;
}

export interface Backend extends Palette {
  problems: Problem[];
  nodePorts: Record<string, NodePorts>;
  sample: Record<string, unknown>;
  runResult: RunResult | null;
  versions: VersionInfo[];
  deployment: DeploymentInfo | null;
  status: string;
  actions: FlowActions;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Everything the canvas needs besides the spec, for the document's current spec. */
export function useBackend(spec: PipelineSpec, onLoad: (spec: PipelineSpec) => void): Backend {
  const [known, setPalette] = useState<Palette>({ library: [], kinds: [], portRules: {} });
  const [problems, setProblems] = useState<Problem[]>([]);
  const [nodePorts, setNodePorts] = useState<Record<string, NodePorts>>({});
  const [sample, setSample] = useState<Record<string, unknown>>({});
  const [runResult, setRunResult] = useState<RunResult | null>(null);
  const [versions, setVersions] = useState<VersionInfo[]>([]);
  const [deployment, setDeployment] = useState<DeploymentInfo | null>(null);
  const [status, setStatus] = useState("");
  const latest = useRef(spec);
  useLayoutEffect(() => {
    latest.current = spec;
  });

  useEffect(() => {
    loadPalette().then(setPalette, (error: unknown) => {
      Notification.error(`Pipeline components: ${messageOf(error)}`);
    });
  }, []);

  const check = useCallback(async (current: PipelineSpec) => {
    const found = await api.check(current);
    if (latest.current !== current) return; // a newer spec is on its way
    setProblems(toProblems(found.problems));
    setNodePorts(toNodePorts(found.node_ports));
  }, []);

  useEffect(() => {
    const timer = window.setTimeout(() => {
      check(spec).catch((error: unknown) => {
        setStatus(`validation failed: ${messageOf(error)}`);
      });
    }, CHECK_DELAY_MS);
    return () => {
      window.clearTimeout(timer);
    };
  }, [spec, check]);

  const failing = useCallback(async (what: string, work: () => Promise<void>) => {
    try {
      await work();
    } catch (error) {
      const message = `${what}: ${messageOf(error)}`;
      setStatus(message);
      Notification.error(message, { autoClose: 8000 });
      throw error;
    }
  }, []);

  const actions = useMemo<FlowActions>(
    () => ({
      validate: () => failing("Validation", () => check(latest.current)),
      run: (next) =>
        failing("Test run", async () => {
          setSample(next);
          setRunResult(toRunResult(await api.run(latest.current, next)));
        }),
      save: (message) =>
        failing("Saving a version", async () => {
          const current = latest.current;
          const saved = await api.savePipeline(current.name, current, message);
          setVersions(toVersions(await api.pipelineVersions(current.name)));
          setStatus(`saved version ${String(saved.version)} of ${saved.name}`);
        }),
      listVersions: () =>
        failing("Versions", async () => {
          setVersions(toVersions(await api.pipelineVersions(latest.current.name)));
        }),
      load: (version) =>
        failing("Loading a version", async () => {
          const loaded = await api.loadPipeline(latest.current.name, version);
          onLoad(loaded.spec as unknown as PipelineSpec);
          setStatus(`loaded version ${String(loaded.version)}`);
        }),
      deploy: () =>
        failing("Deploying", async () => {
          const deployed = await api.deployPipeline(latest.current, sample);
          setDeployment(toDeployment({ ...deployed, key: deployed.key_prefix }));
          setStatus(`deployed at ${deployed.url}`);
        }),
    }),
    [failing, check, onLoad, sample],
  );

  return {
    ...known,
    problems,
    nodePorts,
    sample,
    runResult,
    versions,
    deployment,
    status,
    actions,
  };
}
