"""What `nstarx apply -f FILE` does with each KServe document, decided before anything is applied.

Every document is checked first (`plan_file`): InferenceServices become `DeploymentSpec`s,
InferenceGraphs become `GraphSpec`s (KServe's router semantics, run by the local server), and
ServingRuntimes are accepted and not used (the local server picks its runtime by model format).
A document that cannot run here refuses the whole file, naming the document (`kind/name`) and
the field, so a file is applied whole or not at all. Fields the local server does not act on
(probes, the graph router's pod settings) are reported one line each; a `logger` is run by the
local server (its CloudEvents go to the logger's URL, `serving.sinks`) and reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.deployment.kserve import AUTH_ANNOTATION, validate_manifest
from nstarx_jupyter.deployment.spec import from_kserve
from nstarx_jupyter.errors import InvalidInputError, NstarxError
from nstarx_jupyter.model_uri import ModelUri
from nstarx_jupyter.pipelines.inference_graph import GraphSpec, graph_problems

if TYPE_CHECKING:
    from collections.abc import Callable

    from nstarx_jupyter.deployment.spec import DeploymentSpec

__all__ = ["Plan", "plan_file", "read_documents"]

RUNTIME_NOTE = (
    "accepted, not used here: the local server runs each model with its own runtime for the "
    "model's format (the ServingRuntime is for a cluster)"
)
_PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
_IGNORED = {
    "logger": "sent: the local server posts each request and response as KServe's CloudEvents "
    "to the logger's URL",
    **dict.fromkeys(
        _PROBES,
        "ignored: the local server probes itself (a model answers once "
        "loaded; /v2/models/NAME/ready says so)",
    ),
}
"""Fields of an InferenceService component the local server reports on: what it does with each."""
_WHAT = {"pipeline": "pipeline", "graph": "inference graph", "v1": "deployment", "v2": "deployment"}
_GRAPH_POD = "ignored: it configures the router's pod; the local server runs the graph itself"


@dataclass
class Plan:
    """Everything a file asks for, checked: what to apply, and a line per document and field."""

    services: list[DeploymentSpec] = field(default_factory=list)
    graphs: list[GraphSpec] = field(default_factory=list)
    documents: list[tuple[str, list[str]]] = field(default_factory=list)
    """Each document (`kind/name`) in file order, with what happens to it and its fields."""

    def lines(self, url: str) -> list[str]:
        """The report: one line per document, then one per field it leaves aside."""
        return [(f"{label} {line}" if i == 0 else f"{label}: {line}").replace("{url}", url)
                for label, lines in self.documents
                for i, line in enumerate(lines)]  # fmt: skip


def read_documents(path: Path) -> list[Any]:
    """The YAML documents of a file (`safe_load`: no Python tags), empty ones dropped."""
    import yaml

    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"{path}: {exc}") from exc


def plan_file(path: Path, docs: list[Any], deployed: Callable[[], dict[str, str]]) -> Plan:
    """Check every document of `path`; raise on the first one that cannot be applied here.

    `deployed` gives the names already served: deployments with their protocol (`v1`, `v2`),
    pipelines as `pipeline`, graphs as `graph`; it is asked only when the file has a graph.

    Raises:
        InvalidInputError: `kind/name: field: why` for the first document refused.
    """
    plan = Plan()
    graph_docs: list[tuple[str, dict[str, Any], list[str]]] = []
    for i, doc in enumerate(docs):
        label = _label(doc, i)
        lines: list[str] = []
        try:
            validate_manifest(doc)
            kind = doc["kind"]
            if kind == "InferenceService":
                lines += _plan_service(path, doc, plan)
            elif kind == "InferenceGraph":
                graph_docs.append((label, doc, lines))  # checked once the services are known
            else:
                lines.append(RUNTIME_NOTE)
        except NstarxError as exc:
            raise InvalidInputError(f"{label}: {exc.message}") from exc
        if any(label == known for known, _ in plan.documents) and "/" in label:
            raise InvalidInputError(f"{label}: named twice in {path.name}")
        plan.documents.append((label, lines))
    protocols: dict[str, str] = {spec.name: spec.protocol_version for spec in plan.services}
    for label, doc, lines in graph_docs:
        graph = _plan_graph(doc, label, protocols, deployed)
        plan.graphs.append(graph)
        lines.append(f"applied: POST {{url}}/v1/models/{graph.name}:predict")
        lines += [f"spec.{key}: {_GRAPH_POD}" for key in doc["spec"] if key != "nodes"]
    return plan


def _label(doc: Any, index: int) -> str:
    if isinstance(doc, dict) and isinstance(doc.get("kind"), str):
        name = (doc.get("metadata") or {}).get("name", "?")
        return f"{doc['kind'].lower()}/{name}"
    return f"document {index + 1}"


def _plan_service(path: Path, doc: dict[str, Any], plan: Plan) -> list[str]:
    """The spec to apply (a relative local `storageUri` read relative to the file), its lines.

    The spec goes as `trusted`: the user named the file on the command line, as for `nstarx
    serve --model`.
    """
    spec = from_kserve(doc)
    uri = spec.storage_uri or ""
    if _is_relative_path(uri):  # read relative to the file, not the shell
        spec = spec.replace(storage_uri=str((path.parent / uri).resolve()))
    _check_storage(doc, spec.storage_uri or "")
    plan.services.append(spec.replace(trusted=True))
    return ["applied", *(f"{where}: {_IGNORED[name]}" for where, name in _ignored_fields(doc))]


def _is_relative_path(uri: str) -> bool:
    """Whether `uri` is a plain relative path (a malformed one is `_check_storage`'s to report)."""
    try:
        named = ModelUri.parse(uri)
    except InvalidInputError:
        return False
    return named.is_local and not named.is_file_url and not Path(named.path).is_absolute()


def _check_storage(doc: dict[str, Any], uri: str) -> None:
    """Refuse, before anything is applied, a model the local server cannot read.

    It reads files on this machine and registry URIs; a `gs://` or `s3://` artifact (KServe's
    samples name some) is for a cluster's storage initializer.
    """
    predictor = doc["spec"]["predictor"]
    key = next((k for k, v in predictor.items() if isinstance(v, dict) and "storageUri" in v), "")
    where = f"spec.predictor.{key}.storageUri"
    if not uri:
        return  # from_kserve names the missing storage URI
    try:
        named = ModelUri.parse(uri)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc.message}") from None
    if named.is_registry:
        return
    if not named.is_local:
        raise InvalidInputError(
            f"{where}: '{uri}' is not on this machine; the local server reads a file or folder "
            "here, or models:/NAME/VERSION (download the artifact and name its folder)"
        )
    if not Path(named.path).exists():
        raise InvalidInputError(f"{where}: {uri} does not exist")


def _ignored_fields(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, field) of each `logger` and probe in the predictor, its model and containers."""
    found: list[tuple[str, str]] = []
    predictor = doc["spec"].get("predictor", {})
    places: list[tuple[str, Any]] = [("spec.predictor", predictor)]
    places += [(f"spec.predictor.{key}", value) for key, value in predictor.items()
               if isinstance(value, dict)]  # fmt: skip
    places += [(f"spec.predictor.containers[{i}]", c)
               for i, c in enumerate(predictor.get("containers") or [])]  # fmt: skip
    for where, part in places:
        found += [(f"{where}.{name}", name) for name in _IGNORED if name in part]
    return found


def _plan_graph(
    doc: dict[str, Any],
    label: str,
    protocols: dict[str, str],
    deployed: Callable[[], dict[str, str]],
) -> GraphSpec:
    meta, body = doc["metadata"], doc["spec"]
    name = meta["name"]
    auth = str(meta.get("annotations", {}).get(AUTH_ANNOTATION, "false")).lower() == "true"
    try:
        spec = GraphSpec.parse({"name": name, "nodes": body["nodes"], "auth": auth})
    except InvalidInputError as exc:
        raise InvalidInputError(f"{label}: {exc.message}") from exc
    problems = graph_problems(spec)
    if problems:
        where, message = problems[0]
        raise InvalidInputError(f"{label}: {where}: {message}")
    if name in protocols:
        raise InvalidInputError(f"{label}: metadata.name: an InferenceService of this file is "
                                f"named '{name}' too")  # fmt: skip
    served = deployed()
    if served.get(name, "graph") != "graph":  # an earlier graph of that name is replaced
        raise InvalidInputError(f"{label}: metadata.name: a {_WHAT[served[name]]} is already "
                                f"served as '{name}'")  # fmt: skip
    used: dict[str, str] = {}
    for node_name, node in spec.nodes.items():
        for i, step in enumerate(node.steps):
            service = step.serviceName
            if not service or service in used:
                continue
            protocol = protocols.get(service) or served.get(service, "")
            if protocol not in ("v1", "v2"):
                why = (
                    f"'{service}' is a {_WHAT[protocol]}, not an InferenceService"
                    if protocol
                    else f"no InferenceService '{service}' in this file or deployed"
                )
                where = f"spec.nodes.{node_name}.steps[{i}].serviceName"
                raise InvalidInputError(f"{label}: {where}: {why}")
            used[service] = protocol
    return spec.model_copy(update={"protocols": used})
