// The pipeline editor: palette, canvas, toolbar and side panel. It knows nothing of Jupyter:
// the pipeline, library and results come in as props, edits go out through `onChange`
// (debounced), and the toolbar's requests through `actions`.
import {
  Background,
  Controls,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  useEdgesState,
  useNodesInitialized,
  useNodesState,
  useReactFlow,
  type Connection,
  type EdgeChange,
  type IsValidConnection,
  type NodeChange,
  type OnSelectionChangeParams,
} from "@xyflow/react";
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import type { DragEvent, KeyboardEvent } from "react";
import { CanvasContext, portsOf, useIndexedInputs } from "./context";
import {
  NODE_SIZE,
  bestLayout,
  canConnect,
  copySelection,
  newEdgeId,
  newNodeId,
  pasteClip,
  place,
  readableViewport,
  toFlowEdge,
  toFlowNode,
  type Clip,
  type Direction,
  type PipeEdge as PipeEdgeType,
  type StepData,
  type StepNode as StepNodeType,
} from "./graph";
import { DRAG_TYPE, Palette } from "./Palette";
import { DeploymentBox, ProblemsList, RunPanel } from "./Panels";
import { PipeEdge } from "./PipeEdge";
import { Properties } from "./Properties";
import { StepNode } from "./StepNode";
import { isRecord } from "./coerce";
import { usePipelineSync } from "./sync";
import { Toolbar } from "./Toolbar";
import type {
  ComponentInfo,
  DeploymentInfo,
  FieldChoices,
  FlowActions,
  KindInfo,
  NodePorts,
  PipelineSpec,
  PortRules,
  Problem,
  RunResult,
  VersionInfo,
} from "./types";

export interface FlowCanvasProps {
  spec: PipelineSpec;
  onChange: (spec: PipelineSpec) => void;
  library: readonly ComponentInfo[];
  kinds: readonly KindInfo[];
  portRules: PortRules;
  problems: readonly Problem[];
  nodePorts: Readonly<Record<string, NodePorts>>;
  sample: Record<string, unknown>;
  runResult: RunResult | null;
  versions: readonly VersionInfo[];
  deployment: DeploymentInfo | null;
  status: string;
  /** Pixels, or a CSS length such as "100%" when the host sizes the editor. */
  height: number | string;
  /** Keep the host's keyboard shortcuts out of the editor (a notebook's `a`, `b`, `d d`); a
   * document host leaves them on, so its Ctrl+S still saves. Default true. */
  suppressShortcuts?: boolean;
  /** Values config fields suggest, by field name (the model step's registry models). */
  fieldChoices?: FieldChoices;
  actions: FlowActions;
}

const NODE_TYPES = { step: StepNode };
const EDGE_TYPES = { pipe: PipeEdge };
const DELETE_KEYS = ["Delete", "Backspace"];
/** The minimap's share of the canvas's width, within these bounds (pixels). */
const MINIMAP = { share: 0.18, min: 90, max: 180 };

export function FlowCanvas(props: FlowCanvasProps) {
  return (
    <ReactFlowProvider>
      <Editor {...props} />
    </ReactFlowProvider>
  );
}

function Editor(props: FlowCanvasProps) {
  const { spec, onChange, library, kinds, portRules, problems, actions } = props;
  const flow = useReactFlow<StepNodeType, PipeEdgeType>();
  const [nodes, setNodes, onNodesChangeBase] = useNodesState(spec.nodes.map(toFlowNode));
  const [edges, setEdges, onEdgesChangeBase] = useEdgesState(spec.edges.map(toFlowEdge));
  const [selected, setSelected] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [note, setNote] = useState("");
  const [direction, setDirection] = useState<Direction>("LR");
  const [canvas, setCanvas] = useState({ width: 0, height: 0 });
  const wrapper = useRef<HTMLDivElement>(null);
  const firstGraph = useRef({ nodes, edges });

  /** Show the pipeline at a readable zoom (fitted when it fits, from its start when not). */
  const fitReadable = useCallback(
    (animate: boolean) => {
      const box = wrapper.current?.getBoundingClientRect();
      const current = flow.getNodes();
      if (!box || current.length === 0) return;
      const view = readableViewport(flow.getNodesBounds(current), box);
      void flow.setViewport(view, animate ? { duration: 200 } : undefined);
    },
    [flow],
  );
  /** A pipeline coming in: laid out when nobody placed its nodes, then shown readably. */
  const arrange = useCallback(
    (next: StepNodeType[], links: PipeEdgeType[]) => {
      const box = wrapper.current?.getBoundingClientRect() ?? { width: 0, height: 0 };
      const placed = place(next, links, box);
      setDirection(placed.direction);
      if (placed.laidOut) {
        window.setTimeout(() => {
          fitReadable(false);
        }, 50);
      }
      return placed.nodes;
    },
    [fitReadable],
  );
  const { commit, undo, redo, canUndo, canRedo } = usePipelineSync({
    spec,
    nodes,
    edges,
    setNodes,
    setEdges,
    onChange,
    arrange,
  });
  // First display: lay out a pipeline built in code (no positions) for this canvas's shape, and
  // follow the canvas's size (the minimap's, the next layout's).
  useLayoutEffect(() => {
    const element = wrapper.current;
    if (!element) return;
    const box = element.getBoundingClientRect();
    setCanvas({ width: box.width, height: box.height });
    const first = place(firstGraph.current.nodes, firstGraph.current.edges, box);
    setDirection(first.direction);
    if (first.laidOut) setNodes(first.nodes);
    const observer = new ResizeObserver(([entry]) => {
      if (entry) setCanvas({ width: entry.contentRect.width, height: entry.contentRect.height });
    });
    observer.observe(element);
    return () => {
      observer.disconnect();
    };
  }, [setNodes]);
  const measured = useNodesInitialized();
  const fitted = useRef(spec.nodes.length === 0); // an empty canvas stays put
  useEffect(() => {
    if (!measured || fitted.current) return;
    fitted.current = true;
    fitReadable(false);
  }, [measured, fitReadable]);
  const clip = useRef<Clip | null>(null);
  const sampleText = useRef<string | null>(null);

  const onNodesChange = useCallback(
    (changes: NodeChange<StepNodeType>[]) => {
      onNodesChangeBase(changes);
      const edit = changes.some(
        (change) =>
          change.type === "remove" ||
          change.type === "add" ||
          change.type === "replace" ||
          (change.type === "position" && change.dragging === false),
      );
      if (edit) commit();
    },
    [onNodesChangeBase, commit],
  );
  const onEdgesChange = useCallback(
    (changes: EdgeChange<PipeEdgeType>[]) => {
      onEdgesChangeBase(changes);
      if (changes.some((change) => change.type !== "select")) commit();
    },
    [onEdgesChangeBase, commit],
  );

  const index = useIndexedInputs({ ...props, direction });
  const indexRef = useRef(index);
  useLayoutEffect(() => {
    indexRef.current = index;
  });

  const isValidConnection: IsValidConnection<PipeEdgeType> = useCallback(
    (connection) =>
      canConnect(
        connection,
        (id) => {
          const node = flow.getNode(id);
          return node ? portsOf(indexRef.current, id, node.data.component) : undefined;
        },
        portRules,
        flow.getEdges(),
      ),
    [flow, portRules],
  );
  const onConnect = useCallback(
    (connection: Connection) => {
      setEdges((current) => {
        const sourcePort = connection.sourceHandle ?? "out";
        const targetPort = connection.targetHandle ?? "in";
        const taken = new Set(current.map((edge) => edge.id));
        const id = newEdgeId(connection.source, sourcePort, connection.target, targetPort, taken);
        const edge = toFlowEdge({ id, source: connection.source, source_port: sourcePort,
                                  target: connection.target, target_port: targetPort }); // prettier-ignore
        return [...current, edge];
      });
      commit();
    },
    [setEdges, commit],
  );

  const addNode = useCallback(
    (component: string, position: { x: number; y: number }) => {
      setNodes((current) => {
        const id = newNodeId(component, new Set(current.map((node) => node.id)));
        const node = toFlowNode({ id, component, config: {}, label: null, position });
        return [...current.map((n) => (n.selected ? { ...n, selected: false } : n)),
                { ...node, selected: true }]; // prettier-ignore
      });
      commit();
    },
    [setNodes, commit],
  );
  const addAtCentre = useCallback(
    (component: string) => {
      const box = wrapper.current?.getBoundingClientRect();
      const centre = box
        ? flow.screenToFlowPosition({ x: box.left + box.width / 2, y: box.top + box.height / 2 })
        : { x: 0, y: 0 };
      const jitter = (flow.getNodes().length % 5) * 20;
      addNode(component, {
        x: centre.x - NODE_SIZE.width / 2 + jitter,
        y: centre.y - NODE_SIZE.height / 2 + jitter,
      });
    },
    [flow, addNode],
  );
  const onDragOver = useCallback((event: DragEvent) => {
    if (!event.dataTransfer.types.includes(DRAG_TYPE)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
  }, []);
  const onDrop = useCallback(
    (event: DragEvent) => {
      const component = event.dataTransfer.getData(DRAG_TYPE);
      if (!component) return;
      event.preventDefault();
      const at = flow.screenToFlowPosition({ x: event.clientX, y: event.clientY });
      addNode(component, { x: at.x - NODE_SIZE.width / 2, y: at.y - NODE_SIZE.height / 2 });
    },
    [flow, addNode],
  );

  const updateNode = useCallback(
    (id: string, data: Partial<StepData>) => {
      setNodes((current) =>
        current.map((node) =>
          node.id === id ? { ...node, data: { ...node.data, ...data } } : node,
        ),
      );
      commit();
    },
    [setNodes, commit],
  );
  const onSelectionChange = useCallback(({ nodes: chosen }: OnSelectionChangeParams) => {
    setSelected(chosen.length === 1 && chosen[0] ? chosen[0].id : null);
  }, []);
  const selectTarget = useCallback(
    (target: Problem["target"], id: string) => {
      const nodeId = target === "edge" ? flow.getEdge(id)?.source : id;
      if (nodeId === undefined) return;
      setNodes((current) =>
        current.map((node) =>
          node.selected === (node.id === nodeId) ? node : { ...node, selected: node.id === nodeId },
        ),
      );
      const node = flow.getNode(nodeId);
      if (node) {
        void flow.setCenter(node.position.x + NODE_SIZE.width / 2, node.position.y, {
          zoom: flow.getZoom(),
          duration: 200,
        });
      }
    },
    [flow, setNodes],
  );

  const layout = useCallback(() => {
    const box = wrapper.current?.getBoundingClientRect() ?? { width: 0, height: 0 };
    const laid = bestLayout(flow.getNodes(), flow.getEdges(), box);
    setDirection(laid.direction);
    setNodes(laid.nodes);
    commit();
    window.setTimeout(() => {
      fitReadable(true);
    }, 50);
  }, [flow, setNodes, commit, fitReadable]);
  const fit = useCallback(() => {
    fitReadable(true);
  }, [fitReadable]);

  const onKeyDown = useCallback(
    (event: KeyboardEvent) => {
      if (isTyping(event.target)) return;
      if (!(event.ctrlKey || event.metaKey)) return;
      const key = event.key.toLowerCase();
      if (key === "z" && !event.shiftKey) undo();
      else if ((key === "z" && event.shiftKey) || key === "y") redo();
      else if (key === "c") clip.current = copySelection(flow.getNodes(), flow.getEdges());
      else if (key === "v" && clip.current && clip.current.nodes.length > 0) {
        const [now, links] = [flow.getNodes(), flow.getEdges()];
        const pasted = pasteClip(clip.current, now, links);
        clip.current = {
          nodes: pasted.nodes,
          edges: clip.current.edges.length ? pasted.edges : [],
        };
        setNodes([
          ...now.map((n) => (n.selected ? { ...n, selected: false } : n)),
          ...pasted.nodes,
        ]);
        setEdges([...links, ...pasted.edges]);
        commit();
      } else return;
      event.preventDefault();
    },
    [flow, undo, redo, setNodes, setEdges, commit],
  );

  const request = useCallback(async (label: string, call: () => Promise<void>) => {
    setBusy(label);
    setNote("");
    try {
      await call();
    } catch (error) {
      setNote(error instanceof Error ? error.message : String(error));
    } finally {
      setBusy(null);
    }
  }, []);
  const run = useCallback(() => {
    const text = sampleText.current;
    let sample = props.sample;
    if (text !== null) {
      try {
        const parsed: unknown = JSON.parse(text);
        if (!isRecord(parsed)) throw new Error("not an object");
        sample = parsed;
      } catch {
        setNote("The sample record must be a JSON object");
        return;
      }
    }
    void request("running", () => actions.run(sample));
  }, [actions, props.sample, request]);

  const selectedNode = selected === null ? undefined : nodes.find((node) => node.id === selected);
  return (
    <CanvasContext.Provider value={index}>
      <div
        className="nstarx-flow"
        style={{ height: props.height }}
        data-lm-suppress-shortcuts={props.suppressShortcuts === false ? undefined : "true"}
        tabIndex={-1}
        onKeyDown={onKeyDown}
      >
        <Toolbar
          busy={busy}
          status={note || props.status}
          versions={props.versions}
          canUndo={canUndo}
          canRedo={canRedo}
          onValidate={() => void request("validating", actions.validate)}
          onRun={run}
          onSave={(message) => void request("saving", () => actions.save(message))}
          onOpenVersions={() => void request("listing versions", actions.listVersions)}
          onLoad={(version) => void request("loading", () => actions.load(version))}
          onDeploy={() => void request("deploying", actions.deploy)}
          onUndo={undo}
          onRedo={redo}
          onLayout={layout}
          onFit={fit}
        />
        <div className="nstarx-flow__body">
          <Palette
            library={library}
            kinds={kinds}
            kindIndex={index.kindIndex}
            onAdd={addAtCentre}
          />
          <div
            className="nstarx-flow__canvas"
            ref={wrapper}
            onDragOver={onDragOver}
            onDrop={onDrop}
          >
            <ReactFlow
              nodes={nodes}
              edges={edges}
              nodeTypes={NODE_TYPES}
              edgeTypes={EDGE_TYPES}
              onNodesChange={onNodesChange}
              onEdgesChange={onEdgesChange}
              onConnect={onConnect}
              onSelectionChange={onSelectionChange}
              isValidConnection={isValidConnection}
              deleteKeyCode={DELETE_KEYS}
              minZoom={0.1}
              panOnScroll
              onlyRenderVisibleElements={nodes.length > 100}
              proOptions={{ hideAttribution: true }}
            >
              <Background gap={16} />
              <Controls showInteractive={false} />
              <MiniMap pannable zoomable style={minimapSize(canvas)} />
            </ReactFlow>
            {nodes.length === 0 && (
              <div className="nstarx-flow__empty" data-testid="flow-empty">
                Drag a component here from the palette (or click one to add it)
              </div>
            )}
          </div>
          <div className="nstarx-flow__side">
            {selectedNode && (
              <Properties
                id={selectedNode.id}
                data={selectedNode.data}
                info={index.components.get(selectedNode.data.component)}
                problems={index.nodeProblems.get(selectedNode.id) ?? []}
                choices={props.fieldChoices}
                onChange={updateNode}
              />
            )}
            <ProblemsList problems={problems} onSelect={selectTarget} />
            <RunPanel
              sample={props.sample}
              result={props.runResult}
              onSample={(text) => {
                sampleText.current = text;
              }}
            />
            {props.deployment && <DeploymentBox deployment={props.deployment} />}
          </div>
        </div>
      </div>
    </CanvasContext.Provider>
  );
}

function isTyping(target: EventTarget): boolean {
  return (
    target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))
  );
}

/** A minimap in proportion to the canvas: the canvas's shape, a fixed share of its width. */
function minimapSize(canvas: { width: number; height: number }) {
  if (canvas.width <= 0 || canvas.height <= 0) return undefined;
  const width = Math.round(
    Math.min(MINIMAP.max, Math.max(MINIMAP.min, canvas.width * MINIMAP.share)),
  );
  const height = Math.round(Math.min(width, (width * canvas.height) / canvas.width));
  return { width, height };
}
