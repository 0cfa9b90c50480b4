"""A `PipelineSpec` compiled to KServe: an InferenceService per segment and one InferenceGraph.

A *segment* is a run of nodes joined one to one (each with a single edge in and out), holding at
most one model; it becomes an InferenceService running our server image with the segment's own
`PipelineSpec` (`nstarx serve --pipeline NAME=env:NSTARX_PIPELINE`), which answers records with
records at `/v1/models/NAME/predict`. What joins the segments becomes the InferenceGraph named
after the pipeline:

- a chain is a `Sequence` (every step after the first takes the previous step's `$response`);
- a router is a `Switch` whose steps test the router's branches as GJSON conditions, in order,
  with the default branch last under the condition `@this`, which every JSON body meets (KServe
  answers 404 when no step matches);
- several edges leaving one node are an `Ensemble` of one `Sequence` per edge; KServe merges the
  branches' answers into one object keyed by step name (the first node id of each branch);
- a model node calling `deployment:NAME` is a step calling that InferenceService's product endpoint.

Steps call services by `serviceUrl`: `serviceName` would send the router to KServe's V1
`:predict` (or V2 `/infer`) path of the service, not to the product endpoint.

KServe routes whole requests, not rows: a Switch sends a list of records down the first branch
that at least one of them takes, and an Ensemble takes only JSON objects from its branches, so
a list of records reaches an ensemble on the local server only. A router branch without nodes
runs what follows the join in every branch (a Switch has no pass-through step); shapes whose
forks do not nest are refused, naming the node.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.kserve import (
    AUTH_ANNOTATION,
    DEFAULT_IMAGE,
    GROUP,
    MODE_ANNOTATION,
    to_yaml,
    validate_manifest,
)
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.model_uri import ModelUri, is_fetchable
from nstarx_jupyter.pipelines.library.routing import RouterConfig, SplitConfig, gjson_condition
from nstarx_jupyter.pipelines.library.scoring import ModelConfig
from nstarx_jupyter.pipelines.shipping import HOW_TO_PACKAGE, custom_components
from nstarx_jupyter.pipelines.validate import Problems, resolve_nodes, topological_order, validate

if TYPE_CHECKING:
    from collections.abc import Mapping

    from nstarx_jupyter.pipelines.spec import PipelineSpec
    from nstarx_jupyter.pipelines.validate import Resolved

__all__ = ["MODEL_MOUNT", "PIPELINE_ENV", "PIPELINE_LABEL", "pipeline_to_kserve", "to_yaml"]

MODEL_MOUNT = "file:///mnt/models"
"""Where KServe's storage initializer puts a segment's model; its model node is pointed there."""
PIPELINE_ENV = "NSTARX_PIPELINE"
"""The environment variable holding a segment's `PipelineSpec` JSON."""
PIPELINE_LABEL = "nstarx.io/pipeline"
"""Label on every manifest of a pipeline (`kubectl delete -l nstarx.io/pipeline=NAME`)."""
VISIBILITY_LABEL = "networking.kserve.io/visibility"
"""KServe's label that keeps a service off the ingress (`cluster-local`): segments are steps."""
STORAGE_URI_ENV = "STORAGE_URI"
"""KServe downloads this URI to /mnt/models for a custom container (it has no `storageUri`)."""
MATCH_ALL = "@this"
"""GJSON path that exists for every valid JSON body: the default branch's condition."""
RECORDS = "[@this]|@flatten"
"""GJSON path turning a body of one record or a list of records into a list of records."""
_MAX_NAME = 63 - len("-predictor")
"""KServe serves an InferenceService at the Service `NAME-predictor`, a 63-character DNS label."""
_PORT = 8080
_HOST = "0.0.0.0"  # noqa: S104 - in the pod the server listens beyond loopback: KServe routes to it


def pipeline_to_kserve(
    spec: PipelineSpec,
    *,
    namespace: str | None = None,
    image: str = DEFAULT_IMAGE,
    storage_uris: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The InferenceServices of the pipeline's segments, then its InferenceGraph, all validated.

    `storage_uris` maps each `models:/...` (or `file:///...`) URI the pipeline's model nodes
    load to where the cluster fetches that artifact (`s3://...`, `gs://...`, `pvc://...`):
    KServe cannot read this machine's registry or disk.

    Raises:
        InvalidInputError: the pipeline is invalid (every problem listed), a model has no remote
            artifact, or the pipeline's shape has no InferenceGraph equivalent (the node named).
    """
    problems = validate(spec)
    if problems:
        listed = "; ".join(
            f"{p.target} '{p.id}': {p.message}" if p.id else p.message for p in problems
        )
        raise InvalidInputError(f"pipeline '{spec.name}' is invalid: {listed}")
    custom = custom_components(spec)
    if custom:  # the cluster's image holds the library and installed plug-ins, nothing else
        names = ", ".join(cls.name for cls in custom)
        raise InvalidInputError(
            f"pipeline '{spec.name}' uses components defined in this notebook ({names}), which "
            f"a KServe image does not hold: {HOW_TO_PACKAGE} (the image's too)"
        )
    compiler = _Compiler(spec, namespace, image, dict(storage_uris or {}))
    docs = compiler.compile()
    for doc in docs:
        validate_manifest(doc)
    return docs


@dataclass
class _Compiler:
    """Walks the pipeline from its entry, nesting each fork's branches up to where they meet."""

    spec: PipelineSpec
    namespace: str | None
    image: str
    storage_uris: dict[str, str]
    nodes: dict[str, Resolved] = field(init=False)
    successors: dict[str, list[str]] = field(init=False)
    order: dict[str, int] = field(init=False)
    predecessors: dict[str, set[str]] = field(init=False)
    postdominators: dict[str, set[str]] = field(init=False)
    services: list[dict[str, Any]] = field(default_factory=list)
    graph: dict[str, dict[str, Any]] = field(default_factory=dict)
    placed: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.nodes = resolve_nodes(self.spec, Problems())
        ids = [node.id for node in self.spec.nodes]
        self.successors = {node_id: [] for node_id in ids}
        self.predecessors = {node_id: set() for node_id in ids}
        for edge in self.spec.edges:
            if edge.target not in self.successors[edge.source]:
                self.successors[edge.source].append(edge.target)
            self.predecessors[edge.target].add(edge.source)
        topo = topological_order(ids, self.spec.edges)
        self.order = {node_id: i for i, node_id in enumerate(topo)}
        self.postdominators = {}
        for node_id in reversed(topo):
            after = [self.postdominators[s] for s in self.successors[node_id]]
            common = set.intersection(*after) if after else set()
            self.postdominators[node_id] = {node_id} | common

    def compile(self) -> list[dict[str, Any]]:
        entry = next(n for n in self.order if not self.predecessors[n])
        self.graph["root"] = {}  # reserved before any other node takes the name
        self.graph["root"] = _sequence(self.chain(entry, None))
        left = [node.id for node in self.spec.nodes if node.id not in self.placed]
        if left:
            raise InvalidInputError(f"node '{left[0]}' could not be placed in the InferenceGraph")
        metadata = self.metadata(self.spec.name)
        metadata["annotations"] = {**metadata.get("annotations", {}), AUTH_ANNOTATION: "true"}
        graph = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "InferenceGraph",
                 "metadata": metadata, "spec": {"nodes": self.graph}}  # fmt: skip
        return [*self.services, graph]

    # -- walking ------------------------------------------------------------------------------

    def chain(self, entry: str, stop: str | None) -> list[dict[str, Any]]:
        """The steps from `entry` up to (not including) `stop`, the node where a fork rejoins."""
        steps: list[dict[str, Any]] = []
        node: str | None = entry
        while node is not None and node != stop:
            if self.kind(node) == "router":
                step, node = self.switch(node, stop)
                steps.append(step)
                continue
            if self.deployment(node) is not None:
                steps.append(self.deployment_step(node))
                last = node
            else:
                segment = self.grow(node, stop)
                steps.append(self.segment_step(segment))
                last = segment[-1]
            targets = self.successors[last]
            if len(targets) > 1:
                steps += self.region(last, targets, stop)
                break
            node = targets[0] if targets else None
        return steps

    def region(self, fork: str, targets: list[str], stop: str | None) -> list[dict[str, Any]]:
        """Branches that all run (an Ensemble), then the chain from where they meet."""
        if len(targets) == 1:
            return self.chain(targets[0], stop)
        join = self.join(targets)
        branches = []
        for target in targets:
            if target == join:
                raise InvalidInputError(
                    f"node '{fork}': its edge to '{join}' skips the branches running beside it; "
                    "an InferenceGraph Ensemble has no pass-through step, so put a node on it"
                )
            name = self.node_name(f"{fork}-{target}")
            self.graph[name] = _sequence(self.chain(target, join))
            branches.append({"name": target, "nodeName": name, "dependency": "Hard"})
        name = self.node_name(f"{fork}-parallel")
        self.graph[name] = {"routerType": "Ensemble", "steps": branches}
        steps = [{"name": name, "nodeName": name}]
        return steps if join == stop else steps + self.chain(join, stop)

    def switch(self, router: str, stop: str | None) -> tuple[dict[str, Any], str | None]:
        """A router's node in the graph, and the node the walk goes on from.

        A `router` becomes a Switch (its default branch last), a `split` a Splitter (its
        weights); each branch is a Sequence of its own.
        """
        self.place([router])
        config = self.nodes[router].config
        if isinstance(config, SplitConfig):
            ports = list(config.weights)
            conditions: dict[str, str] = {}
        else:
            assert isinstance(config, RouterConfig)  # noqa: S101 - validate() parsed it
            conditions = {b.name: gjson_condition(b, RECORDS) for b in config.branches}
            ports = [*conditions, config.default]
        join = self.join(self.successors[router])
        bodies: dict[str, list[dict[str, Any]]] = {}
        for port in ports:
            edges = [e for e in self.spec.edges if e.source == router and e.source_port == port]
            targets = list(dict.fromkeys(edge.target for edge in edges))
            bodies[port] = [] if targets == [join] else self.region(router, targets, join)
        after: str | None = join
        if not all(bodies.values()):
            # A branch without nodes: every branch goes on with what follows the join itself.
            empty = next(port for port, body in bodies.items() if not body)
            if join == stop:
                raise InvalidInputError(
                    f"node '{router}': branch '{empty}' goes straight on to '{join}'; an "
                    "InferenceGraph Switch has no pass-through step, so put a node on it"
                )
            tail = self.chain(join, stop)
            bodies = {port: [*body, *tail] for port, body in bodies.items()}
            after = stop
        steps = []
        for port, body in bodies.items():
            name = self.node_name(f"{router}-{port}")
            self.graph[name] = _sequence(body)
            if isinstance(config, SplitConfig):
                steps.append({"name": port, "nodeName": name, "weight": config.weights[port]})
            else:
                condition = conditions.get(port, MATCH_ALL)
                steps.append({"name": port, "condition": condition, "nodeName": name})
        name = self.node_name(router)
        kind = "Splitter" if isinstance(config, SplitConfig) else "Switch"
        self.graph[name] = {"routerType": kind, "steps": steps}
        return {"name": router, "nodeName": name}, after

    def grow(self, start: str, stop: str | None) -> list[str]:
        """The longest segment from `start`: one-to-one edges, no router, at most one model."""
        segment = [start]
        models = int(self.kind(start) == "model")
        while len(self.successors[segment[-1]]) == 1:
            nxt = self.successors[segment[-1]][0]
            if nxt == stop or len(self.predecessors[nxt]) != 1 or self.kind(nxt) == "router":
                break
            if self.deployment(nxt) is not None or (self.kind(nxt) == "model" and models):
                break
            models += self.kind(nxt) == "model"
            segment.append(nxt)
        return segment

    def join(self, targets: list[str]) -> str:
        """The first node every path from `targets` goes through (the exit at the latest)."""
        common = set.intersection(*(self.postdominators[t] for t in targets))
        return min(common, key=self.order.__getitem__)

    # -- steps and services -------------------------------------------------------------------

    def segment_step(self, segment: list[str]) -> dict[str, Any]:
        """A step calling a new InferenceService that runs `segment`."""
        self.place(segment)
        name = self.service_name(segment[0])
        members = set(segment)
        nodes, storage = [], None
        for node in self.spec.nodes:
            if node.id not in members:
                continue
            uri = self.artifact(node.id)
            if uri is not None:
                storage = self.storage_uri(node.id, uri)
                node = node.model_copy(update={"config": {**node.config, "model": MODEL_MOUNT}})
            nodes.append(node)
        edges = [e for e in self.spec.edges if e.source in members and e.target in members]
        about = f"part of pipeline '{self.spec.name}'"
        part = self.spec.model_copy(
            update={"name": name, "description": about, "nodes": nodes, "edges": edges}
        )
        self.services.append(self.service(name, part.model_dump_json(), storage))
        return {"name": segment[0], "serviceUrl": self.url(name)}

    def deployment_step(self, node_id: str) -> dict[str, Any]:
        """A step calling an existing deployment's product endpoint."""
        self.place([node_id])
        config = self.nodes[node_id].config
        assert isinstance(config, ModelConfig)  # noqa: S101 - deployment() checked it
        if config.output_prefix or config.features:
            used = "output_prefix" if config.output_prefix else "features"
            raise InvalidInputError(
                f"node '{node_id}': {used} cannot apply when the graph calls "
                f"'{config.model}' directly (the deployment answers with its own outputs only)"
            )
        name = ModelUri.parse(config.model).name
        return {"name": node_id, "serviceUrl": self.url(name)}

    def service(self, name: str, pipeline_json: str, storage: str | None) -> dict[str, Any]:
        """The InferenceService running one segment on our server image."""
        env = [{"name": PIPELINE_ENV, "value": pipeline_json}]
        if storage is not None:
            env.append({"name": STORAGE_URI_ENV, "value": storage})
        # Segments are reached only by the graph's router inside the cluster (cluster-local
        # visibility), which passes no key: the caller's credential is checked once, at the
        # InferenceGraph (its auth annotation).
        args = ["serve", "--pipeline", f"{name}=env:{PIPELINE_ENV}", "--host", _HOST,
                "--port", str(_PORT), "--no-auth"]  # fmt: skip
        container = {"name": "kserve-container", "image": self.image, "args": args, "env": env,
                     "ports": [{"containerPort": _PORT, "protocol": "TCP"}]}  # fmt: skip
        metadata = self.metadata(name)
        metadata["annotations"] = {MODE_ANNOTATION: "Standard"}
        metadata["labels"] = {**metadata.get("labels", {}), VISIBILITY_LABEL: "cluster-local"}
        predictor = {"containers": [container]}
        return {"apiVersion": f"{GROUP}/v1beta1", "kind": "InferenceService",
                "metadata": metadata, "spec": {"predictor": predictor}}  # fmt: skip

    def storage_uri(self, node_id: str, uri: str) -> str:
        """Where the cluster fetches the artifact of `uri` (a remote URI, or an error)."""
        remote = self.storage_uris.get(uri)
        if remote is None:
            raise InvalidInputError(
                f"node '{node_id}': KServe needs '{uri}' at a remote URI; pass "
                f"storage_uris={{'{uri}': 's3://...'}} (or gs://, pvc://, https://, oci://, hf://)"
            )
        if not is_fetchable(remote):
            raise InvalidInputError(
                f"node '{node_id}': storage URI '{remote}' for '{uri}' is on this machine and a "
                "cluster cannot read it; upload the artifact and pass 's3://...', 'gs://...' or "
                "'pvc://...'"
            )
        return remote

    # -- small facts ----------------------------------------------------------------------------

    def kind(self, node_id: str) -> str:
        return self.nodes[node_id].cls.kind

    def deployment(self, node_id: str) -> str | None:
        """The `deployment:NAME` a model node calls, if it calls one."""
        config = self.nodes[node_id].config
        if isinstance(config, ModelConfig) and ModelUri.parse(config.model).is_deployment:
            return config.model
        return None

    def artifact(self, node_id: str) -> str | None:
        """The model artifact a node loads (`models:/...`, `file:///...`), if it loads one."""
        found = self.nodes[node_id]
        assert found.config is not None  # noqa: S101 - validate() parsed it
        uris = [uri for uri in found.cls.model_uris(found.config) if _is_artifact(uri)]
        if not uris:
            return None
        if not isinstance(found.config, ModelConfig) or len(uris) > 1:
            raise InvalidInputError(
                f"node '{node_id}': component '{found.cls.name}' calls {', '.join(uris)}; only "
                "the 'model' component can be pointed at the artifact KServe mounts"
            )
        return uris[0]

    def place(self, node_ids: list[str]) -> None:
        for node_id in node_ids:
            if node_id in self.placed:
                raise InvalidInputError(
                    f"node '{node_id}' is reached from branches that rejoin elsewhere; an "
                    "InferenceGraph nests its forks, so give each branch its own nodes"
                )
            self.placed.add(node_id)

    def service_name(self, node_id: str) -> str:
        """`<pipeline>-<node id>` as a DNS label short enough for `NAME-predictor`, unique."""
        wanted = re.sub(r"[^a-z0-9]+", "-", f"{self.spec.name}-{node_id}".lower()).strip("-")
        name, salt = wanted, 0
        while len(name) > _MAX_NAME or name in self.names:
            digest = hashlib.sha256(f"{node_id}/{salt}".encode()).hexdigest()[:8]
            name = f"{wanted[: _MAX_NAME - 9].rstrip('-')}-{digest}"
            salt += 1
        self.names.add(name)
        return name

    def node_name(self, wanted: str) -> str:
        """A graph node name not taken yet."""
        name, n = wanted, 1
        while name in self.graph:
            n += 1
            name = f"{wanted}-{n}"
        self.graph[name] = {}
        return name

    def url(self, service: str) -> str:
        """The product endpoint of an InferenceService, through its predictor's Service."""
        host = f"{service}-predictor"
        if self.namespace:
            host += f".{self.namespace}.svc.cluster.local"
        return f"http://{host}/v1/models/{service}/predict"

    def metadata(self, name: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "labels": {PIPELINE_LABEL: self.spec.name}}
        if self.namespace:
            metadata["namespace"] = self.namespace
        return metadata


def _sequence(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """A Sequence node: each step after the first gets the previous answer; a failure stops it."""
    chained = [
        {**step, **({"data": "$response"} if i else {}), "dependency": "Hard"}
        for i, step in enumerate(steps)
    ]
    return {"routerType": "Sequence", "steps": chained}


def _is_artifact(uri: str) -> bool:
    """Whether a model URI names an artifact (the registry's or a file here) to fetch."""
    named = ModelUri.parse(uri)
    return named.is_registry or named.is_file_url
