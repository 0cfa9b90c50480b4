"""Pipelines compiled to KServe: segment InferenceServices and the InferenceGraph joining them."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nstarx_jupyter.deployment import kserve
from nstarx_jupyter.deployment.graph import (
    MODEL_MOUNT,
    PIPELINE_ENV,
    pipeline_to_kserve,
    to_yaml,
)
from nstarx_jupyter.deployment.kserve import validate_manifest
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.spec import PipelineSpec
from nstarx_jupyter.pipelines.validate import validate

Doc = dict[str, Any]

# The package's copy of KServe's CRD schemas (deployment/schemas/README.md): in every clone.
SCHEMAS = Path(kserve.__file__).parent / "schemas"
SCHEMA_FILES = {
    "InferenceService": "inferenceservice-v1beta1.json",
    "InferenceGraph": "inferencegraph-v1alpha1.json",
}
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
RECORD_SCHEMA = {"type": "object", "properties": {"amount": {"type": "number"}}}
URIS = {
    "models:/fraud/3": "s3://models/fraud/3",
    "models:/fraud-a/1": "s3://models/fraud-a/1",
    "models:/fraud-b@champion": "gs://models/fraud-b/7",
    "models:/fraud-small/2": "pvc://models/fraud-small/2",
}


def node(node_id: str, component: str, **config: Any) -> Doc:
    return {"id": node_id, "component": component, "config": config}


def edge(source: str, target: str, source_port: str = "out") -> Doc:
    return {"id": f"{source}.{source_port}-{target}", "source": source,
            "source_port": source_port, "target": target}  # fmt: skip


def straight(model: str = "models:/fraud/3") -> PipelineSpec:
    """validate → impute → model → threshold → fields."""
    return PipelineSpec.parse({
        "name": "scoring",
        "nodes": [
            node("check", "validate", schema=RECORD_SCHEMA),
            node("fill", "impute", strategy="constant", fill_value=0),
            node("score", "model", model=model),
            node("decide", "threshold", field="prediction", threshold=0.5),
            node("respond", "fields", fields={"fraud": "decision", "score": "prediction"}),
        ],
        "edges": [edge("check", "fill"), edge("fill", "score"), edge("score", "decide"),
                  edge("decide", "respond")],
    })  # fmt: skip


def fraud() -> PipelineSpec:
    """Big amounts go to two models and their ensemble, the rest to a small model."""
    high = {"name": "high", "when": [{"field": "amount", "op": ">", "value": 1000}]}
    return PipelineSpec.parse({
        "name": "fraud",
        "nodes": [
            node("check", "validate", schema=RECORD_SCHEMA),
            node("route", "router", branches=[high], default="standard"),
            node("big_a", "model", model="models:/fraud-a/1", output_prefix="a_"),
            node("big_b", "model", model="models:/fraud-b@champion", output_prefix="b_"),
            node("combine", "ensemble", members=["a_", "b_"]),
            node("small", "model", model="models:/fraud-small/2"),
            node("decide", "threshold", field="prediction"),
            node("respond", "fields", fields={"fraud": "decision"}),
        ],
        "edges": [edge("check", "route"), edge("route", "big_a", "high"),
                  edge("route", "big_b", "high"), edge("big_a", "combine"),
                  edge("big_b", "combine"), edge("route", "small", "standard"),
                  edge("combine", "decide"), edge("small", "decide"), edge("decide", "respond")],
    })  # fmt: skip


def services(docs: list[Doc]) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "InferenceService"}


def graph_of(docs: list[Doc]) -> Doc:
    (graph,) = [d for d in docs if d["kind"] == "InferenceGraph"]
    return graph


def container(isvc: Doc) -> Doc:
    (found,) = isvc["spec"]["predictor"]["containers"]
    return found  # type: ignore[no-any-return]


def env(isvc: Doc) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(isvc)["env"]}


def segment(isvc: Doc) -> PipelineSpec:
    return PipelineSpec.parse(env(isvc)[PIPELINE_ENV])


@functools.cache
def shared_validator(kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / SCHEMA_FILES[kind]).read_text())
    return jsonschema.Draft7Validator(schema)


# -- a straight pipeline -------------------------------------------------------------------------


def test_a_straight_pipeline_is_one_inference_service_behind_a_one_step_graph() -> None:
    docs = pipeline_to_kserve(straight(), namespace="risk", image="example.org/nstarx:1",
                              storage_uris=URIS)  # fmt: skip
    assert [d["kind"] for d in docs] == ["InferenceService", "InferenceGraph"]
    isvc, graph = docs
    assert isvc["metadata"]["name"] == "scoring-check"
    assert isvc["metadata"]["namespace"] == graph["metadata"]["namespace"] == "risk"
    served = container(isvc)
    assert served["name"] == "kserve-container"
    assert served["image"] == "example.org/nstarx:1"
    assert served["args"] == ["serve", "--pipeline", "scoring-check=env:NSTARX_PIPELINE",
                              "--host", "0.0.0.0", "--port", "8080", "--no-auth"]  # fmt: skip
    # Only the graph's router reaches a segment; the caller's credential is checked at the graph.
    assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
    assert graph["metadata"]["annotations"]["security.opendatahub.io/enable-auth"] == "true"
    assert env(isvc)["STORAGE_URI"] == "s3://models/fraud/3"  # KServe mounts it at /mnt/models
    part = segment(isvc)
    assert part.name == "scoring-check"
    assert [n.id for n in part.nodes] == ["check", "fill", "score", "decide", "respond"]
    assert len(part.edges) == 4
    assert part.node("score").config == {"model": MODEL_MOUNT}
    assert straight().node("score").config == {"model": "models:/fraud/3"}  # not edited in place
    assert graph["metadata"]["name"] == "scoring"
    url = "http://scoring-check-predictor.risk.svc.cluster.local/v1/models/scoring-check/predict"
    assert graph["spec"]["nodes"] == {"root": {"routerType": "Sequence", "steps": [
        {"name": "check", "serviceUrl": url, "dependency": "Hard"}]}}  # fmt: skip


def test_without_a_namespace_the_graph_calls_services_in_its_own() -> None:
    docs = pipeline_to_kserve(straight(), storage_uris=URIS)
    assert "namespace" not in docs[0]["metadata"]
    (step,) = graph_of(docs)["spec"]["nodes"]["root"]["steps"]
    assert step["serviceUrl"] == "http://scoring-check-predictor/v1/models/scoring-check/predict"


def test_a_second_model_in_a_run_starts_a_new_segment() -> None:
    doc = straight().model_dump()
    doc["nodes"].insert(3, node("rescore", "model", model="models:/fraud-a/1"))
    doc["edges"] = [edge("check", "fill"), edge("fill", "score"), edge("score", "rescore"),
                    edge("rescore", "decide"), edge("decide", "respond")]  # fmt: skip
    docs = pipeline_to_kserve(PipelineSpec.parse(doc), storage_uris=URIS)
    found = services(docs)
    assert [[n.id for n in segment(isvc).nodes] for isvc in found.values()] == [
        ["check", "fill", "score"], ["rescore", "decide", "respond"]]  # fmt: skip
    assert [env(isvc)["STORAGE_URI"] for isvc in found.values()] == [
        "s3://models/fraud/3", "s3://models/fraud-a/1"]  # fmt: skip
    steps = graph_of(docs)["spec"]["nodes"]["root"]["steps"]
    assert [step["serviceUrl"].split("/")[2] for step in steps] == [
        "scoring-check-predictor", "scoring-rescore-predictor"]  # fmt: skip
    assert "data" not in steps[0]
    assert steps[1]["data"] == "$response"


# -- routers and ensembles -----------------------------------------------------------------------


def test_a_router_becomes_a_switch_with_its_default_last_and_an_ensemble_its_members() -> None:
    docs = pipeline_to_kserve(fraud(), namespace="risk", storage_uris=URIS)
    found = services(docs)
    assert sorted(found) == ["fraud-big-a", "fraud-big-b", "fraud-check", "fraud-combine",
                             "fraud-decide", "fraud-small"]  # fmt: skip
    assert [n.id for n in segment(found["fraud-decide"]).nodes] == ["decide", "respond"]
    assert "STORAGE_URI" not in env(found["fraud-check"])
    nodes = graph_of(docs)["spec"]["nodes"]
    root = nodes["root"]["steps"]
    assert [step["name"] for step in root] == ["check", "route", "decide"]
    assert [step.get("data") for step in root] == [None, "$response", "$response"]
    switch = nodes[root[1]["nodeName"]]
    assert switch["routerType"] == "Switch"
    high, default = switch["steps"]
    assert high["name"] == "high"
    assert high["condition"] == "[@this]|@flatten.#(amount>1000)"  # one record or a list
    assert default == {"name": "standard", "condition": "@this", "nodeName": "route-standard"}
    small = nodes["route-standard"]["steps"]
    assert [step["serviceUrl"].split("/")[2] for step in small] == [
        "fraud-small-predictor.risk.svc.cluster.local"]  # fmt: skip
    branch = nodes[high["nodeName"]]["steps"]
    assert branch[1]["name"] == "combine"
    assert branch[1]["data"] == "$response"
    ensemble = nodes[branch[0]["nodeName"]]
    assert ensemble["routerType"] == "Ensemble"
    # KServe keys the merged answer by step name: the first node of each member branch.
    assert [step["name"] for step in ensemble["steps"]] == ["big_a", "big_b"]
    members = [nodes[step["nodeName"]]["steps"] for step in ensemble["steps"]]
    assert [[s["serviceUrl"].split("/")[-2] for s in m] for m in members] == [
        ["fraud-big-a"], ["fraud-big-b"]]  # fmt: skip


def test_a_branch_without_nodes_runs_what_follows_the_join_in_every_branch() -> None:
    high = {"name": "high", "when": [{"field": "amount", "op": ">=", "value": 1000}]}
    spec = PipelineSpec.parse({
        "name": "skip",
        "nodes": [node("route", "router", branches=[high]),
                  node("score", "model", model="models:/fraud/3"),
                  node("respond", "records")],
        "edges": [edge("route", "score", "high"), edge("route", "respond", "default"),
                  edge("score", "respond")],
    })  # fmt: skip
    docs = pipeline_to_kserve(spec, storage_uris=URIS)
    assert sorted(services(docs)) == ["skip-respond", "skip-score"]
    nodes = graph_of(docs)["spec"]["nodes"]
    (root,) = nodes["root"]["steps"]
    high_steps, default_steps = (
        nodes[s["nodeName"]]["steps"] for s in nodes[root["nodeName"]]["steps"]
    )
    assert [s["name"] for s in high_steps] == ["score", "respond"]
    assert [s["name"] for s in default_steps] == ["respond"]
    assert "data" not in default_steps[0]


def test_a_deployment_node_is_a_step_calling_that_deployment() -> None:
    docs = pipeline_to_kserve(straight("deployment:fraud-live"), namespace="risk")
    found = services(docs)
    assert sorted(found) == ["scoring-check", "scoring-decide"]
    assert all("STORAGE_URI" not in env(isvc) for isvc in found.values())
    steps = graph_of(docs)["spec"]["nodes"]["root"]["steps"]
    assert [step["name"] for step in steps] == ["check", "score", "decide"]
    assert steps[1]["serviceUrl"] == (
        "http://fraud-live-predictor.risk.svc.cluster.local/v1/models/fraud-live/predict"
    )


def test_a_deployment_node_cannot_rename_the_outputs_it_does_not_produce() -> None:
    doc = straight("deployment:fraud-live").model_dump()
    doc["nodes"][2]["config"]["output_prefix"] = "live_"
    with pytest.raises(InvalidInputError, match=r"node 'score': output_prefix"):
        pipeline_to_kserve(PipelineSpec.parse(doc))


# -- what is refused -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["/home/me/model.joblib", "file:///tmp/model", "mlruns/1/model"])
def test_a_local_storage_uri_is_refused_naming_the_node(where: str) -> None:
    with pytest.raises(InvalidInputError, match=r"node 'score'.*on this machine"):
        pipeline_to_kserve(straight(), storage_uris={"models:/fraud/3": where})


def test_a_model_without_a_storage_uri_is_refused_naming_the_node() -> None:
    with pytest.raises(InvalidInputError, match=r"node 'big_b'.*'models:/fraud-b@champion'"):
        pipeline_to_kserve(fraud(), storage_uris={"models:/fraud-a/1": "s3://a"})


def test_a_model_file_on_this_machine_needs_a_remote_copy_too() -> None:
    here = "file:///home/me/fraud.joblib"
    with pytest.raises(InvalidInputError, match=r"node 'score'.*'file:///home/me/fraud.joblib'"):
        pipeline_to_kserve(straight(here))
    (isvc, _) = pipeline_to_kserve(straight(here), storage_uris={here: "s3://models/fraud"})
    assert env(isvc)["STORAGE_URI"] == "s3://models/fraud"
    assert segment(isvc).node("score").config == {"model": MODEL_MOUNT}


def test_an_invalid_pipeline_lists_every_problem() -> None:
    doc = straight().model_dump()
    doc["nodes"][1]["config"] = {"strategy": "constant"}
    doc["edges"].pop()  # 'respond' is left without input: two nodes now give the response
    with pytest.raises(InvalidInputError) as caught:
        pipeline_to_kserve(PipelineSpec.parse(doc), storage_uris=URIS)
    assert "node 'fill': strategy 'constant' needs fill_value" in caught.value.message
    assert "node 'respond'" in caught.value.message


# -- names and manifests -------------------------------------------------------------------------


def test_service_names_are_unique_dns_labels_that_leave_room_for_the_predictor_suffix() -> None:
    ids = ["Check_Input", "check-input", "check:input", "x" * 64, "x" * 63 + "y"]
    fill = {"strategy": "constant", "fill_value": 0}
    spec = PipelineSpec.parse({  # one segment per id: each sits alone between a fork and a join
        "name": "a" * 40,
        "nodes": [node(i, "impute", **fill) for i in ["start", *ids]] + [node("end", "records")],
        "edges": [{**edge("start", i), "id": f"in{n}"} for n, i in enumerate(ids)]
        + [{**edge(i, "end"), "id": f"out{n}"} for n, i in enumerate(ids)],
    })  # fmt: skip
    docs = pipeline_to_kserve(spec, storage_uris=URIS)
    names = list(services(docs))
    assert len(names) == len(set(names)) == len(ids) + 2
    for name in names:
        assert DNS_LABEL.match(name), name
        assert len(f"{name}-predictor") <= 63, name
    steps = graph_of(docs)["spec"]["nodes"]
    ensemble = next(n for n in steps.values() if n["routerType"] == "Ensemble")
    assert [step["name"] for step in ensemble["steps"]] == ids


def every_manifest() -> list[Doc]:
    docs = pipeline_to_kserve(straight(), namespace="risk", storage_uris=URIS)
    docs += pipeline_to_kserve(fraud(), storage_uris=URIS)
    docs += pipeline_to_kserve(straight("deployment:fraud-live"))
    return docs


@pytest.mark.parametrize(
    "doc", every_manifest(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}"
)
def test_every_manifest_passes_the_crd_schemas_and_the_webhook_rules(doc: Doc) -> None:
    validate_manifest(doc)
    errors = [e.message for e in shared_validator(doc["kind"]).iter_errors(doc)]
    assert errors == []


def test_the_manifests_render_as_yaml_and_read_back_the_same() -> None:
    docs = pipeline_to_kserve(fraud(), namespace="risk", storage_uris=URIS)
    text = to_yaml(docs)
    assert list(yaml.safe_load_all(text)) == docs
    assert [yaml.safe_load(yaml.safe_dump(doc)) for doc in docs] == docs


# -- what the segments run -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", [straight(), fraud()], ids=["straight", "fraud"])
def test_each_segment_is_a_valid_pipeline_reading_its_model_where_kserve_mounts_it(
    spec: PipelineSpec,
) -> None:
    for isvc in services(pipeline_to_kserve(spec, storage_uris=URIS)).values():
        part = segment(isvc)
        if part.nodes[0].component == "ensemble":
            continue  # see the next test
        assert validate(part) == [], part.name
        models = [n for n in part.nodes if n.component == "model"]
        assert len(models) <= 1
        assert all(n.config["model"] == MODEL_MOUNT for n in models)
        assert ("STORAGE_URI" in env(isvc)) == bool(models)


def test_a_segment_headed_by_an_ensemble_is_a_valid_pipeline() -> None:
    combine = services(pipeline_to_kserve(fraud(), storage_uris=URIS))["fraud-combine"]
    assert validate(segment(combine)) == []


@st.composite
def dags(draw: st.DrawFn) -> PipelineSpec:
    """Random forks and joins of imputers ending in one formatter."""
    count = draw(st.integers(min_value=2, max_value=8))
    edges = set()
    for i in range(1, count):
        edges |= {(s, i) for s in draw(st.sets(st.integers(0, i - 1), min_size=1, max_size=2))}
    edges |= {(j, count - 1) for j in range(count - 1) if all(s != j for s, _ in edges)}
    fill = {"strategy": "constant", "fill_value": 0}
    return PipelineSpec.parse({
        "name": "random",
        "nodes": [node(f"n{i}", "impute", **fill) for i in range(count - 1)]
        + [node(f"n{count - 1}", "records")],
        "edges": [edge(f"n{s}", f"n{t}") for s, t in sorted(edges)],
    })  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(dags())
def test_any_valid_pipeline_compiles_with_each_node_once_or_is_refused_clearly(
    spec: PipelineSpec,
) -> None:
    refused = ""
    try:
        docs = pipeline_to_kserve(spec)
    except InvalidInputError as exc:
        refused = exc.message
    if refused:  # a shape an InferenceGraph cannot nest: the message names the node to change
        assert re.match(r"node '[^']+'", refused), refused
        return
    placed = [n.id for isvc in services(docs).values() for n in segment(isvc).nodes]
    assert sorted(placed) == sorted(n.id for n in spec.nodes)
    nodes = graph_of(docs)["spec"]["nodes"]
    urls = {s["serviceUrl"] for n in nodes.values() for s in n["steps"] if "serviceUrl" in s}
    assert urls == {f"http://{name}-predictor/v1/models/{name}/predict" for name in services(docs)}


def test_a_split_becomes_a_splitter_with_its_weights() -> None:
    """An A/B split inside a pipeline: KServe's Splitter picks a branch per request."""
    spec = PipelineSpec.parse({
        "name": "ab",
        "nodes": [
            node("share", "split", weights={"a": 90, "b": 10}),
            node("score_a", "model", model="models:/fraud/3", output_prefix="a_"),
            node("score_b", "model", model="models:/fraud-a/1", output_prefix="b_"),
            node("respond", "records"),
        ],
        "edges": [
            {"id": "x", "source": "share", "source_port": "a", "target": "score_a"},
            {"id": "y", "source": "share", "source_port": "b", "target": "score_b"},
            edge("score_a", "respond"),
            edge("score_b", "respond"),
        ],
    })  # fmt: skip
    docs = pipeline_to_kserve(spec, storage_uris=URIS)
    graph = docs[-1]
    splitters = [n for n in graph["spec"]["nodes"].values() if n["routerType"] == "Splitter"]
    assert len(splitters) == 1
    assert [(s["name"], s["weight"]) for s in splitters[0]["steps"]] == [("a", 90), ("b", 10)]
    for doc in docs:
        validate_manifest(doc)
