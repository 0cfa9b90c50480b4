// What every node and edge of the canvas reads besides its own data: the library, the
// problems and the last test run, indexed by id once per change (not searched per node).
import { createContext, useContext, useMemo } from "react";
import type { Direction } from "./graph";
import type { ComponentInfo, KindInfo, NodePorts, NodeRun, Problem, RunResult } from "./types";

export interface CanvasIndex {
  components: ReadonlyMap<string, ComponentInfo>;
  /** Ports that differ from the library's (a router's branches), by node id. */
  nodePorts: Readonly<Record<string, NodePorts>>;
  nodeProblems: ReadonlyMap<string, string[]>;
  edgeProblems: ReadonlyMap<string, string[]>;
  runs: Readonly<Record<string, NodeRun>>;
  /** The node a failed test run stopped at. */
  failed: string | null;
  /** Position of each kind in the palette (its colour). */
  kindIndex: ReadonlyMap<string, number>;
  /** Which way the pipeline runs: inputs on the nodes' left and outputs on their right, or
   * inputs on top and outputs below. */
  direction: Direction;
}

export const EMPTY_INDEX: CanvasIndex = {
  components: new Map(),
  nodePorts: {},
  nodeProblems: new Map(),
  edgeProblems: new Map(),
  runs: {},
  failed: null,
  kindIndex: new Map(),
  direction: "LR",
};

export const CanvasContext = createContext<CanvasIndex>(EMPTY_INDEX);

export function useCanvasIndex(): CanvasIndex {
  return useContext(CanvasContext);
}

/** A node's ports: its own (config-dependent) ones, else its component's. */
export function portsOf(index: CanvasIndex, nodeId: string, component: string): NodePorts {
  return index.nodePorts[nodeId] ?? index.components.get(component) ?? { inputs: [], outputs: [] };
}

/** Problems, ports and run results indexed by id, rebuilt only when one of them changes. */
interface IndexInputs {
  library: readonly ComponentInfo[];
  kinds: readonly KindInfo[];
  nodePorts: Readonly<Record<string, NodePorts>>;
  problems: readonly Problem[];
  runResult: RunResult | null;
  direction?: Direction;
}

export function useIndexedInputs(props: IndexInputs): CanvasIndex {
  const { library, kinds, nodePorts, problems, runResult, direction = "LR" } = props;
  const components = useMemo(() => new Map(library.map((info) => [info.name, info])), [library]);
  const kindIndex = useMemo(() => new Map(kinds.map((kind, i) => [kind.kind, i])), [kinds]);
  const [nodeProblems, edgeProblems] = useMemo(() => {
    const byNode = new Map<string, string[]>();
    const byEdge = new Map<string, string[]>();
    for (const problem of problems) {
      if (problem.id === null || problem.target === "pipeline") continue;
      const into = problem.target === "node" ? byNode : byEdge;
      into.set(problem.id, [...(into.get(problem.id) ?? []), problem.message]);
    }
    return [byNode, byEdge];
  }, [problems]);
  return useMemo(
    () => ({
      components,
      nodePorts,
      nodeProblems,
      edgeProblems,
      runs: runResult?.nodes ?? {},
      failed: runResult?.error ? (runResult.node ?? null) : null,
      kindIndex,
      direction,
    }),
    [components, nodePorts, nodeProblems, edgeProblems, runResult, kindIndex, direction],
  );
}
