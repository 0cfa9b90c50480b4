"""How the KServe backend reads KServe's status and the API server's Status answers.

The documents are shaped as KServe v0.20 writes them (pkg/apis/serving/v1beta1/
inference_service_status.go) and as kube-apiserver answered in tests/integration/
test_kserve_backend.py, which runs the same code against a real API server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nstarx_jupyter.deployment import kserve_graphs as kg
from nstarx_jupyter.deployment import kserve_status as ks
from nstarx_jupyter.deployment.kube_api import api_error as translate
from nstarx_jupyter.errors import ConflictError, InvalidInputError, NotFoundError

kubernetes = pytest.importorskip("kubernetes")


def isvc(generation: int = 1, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "iris", "generation": generation},
            "spec": {"predictor": {"minReplicas": 1}}, "status": status}  # fmt: skip


def conditions(**states: str | tuple[str, str, str]) -> list[dict[str, str]]:
    rows = []
    for kind, state in states.items():
        status, reason, message = (state, "", "") if isinstance(state, str) else state
        rows.append({"type": kind, "status": status, "reason": reason, "message": message})
    return rows


def test_each_condition_moves_the_stage_forward() -> None:
    assert ks.stage_of(isvc(conditions=[])) == ("accepted", None)
    assert ks.stage_of(isvc(conditions=conditions(PredictorRouteReady="True")))[0] == "scheduled"
    assert ks.stage_of(isvc(conditions=conditions(PredictorReady="True")))[0] == "loaded"
    assert ks.stage_of(isvc(conditions=conditions(PredictorReady="True", Ready="True"))) == (
        "ready", None)  # fmt: skip


def test_a_false_condition_fails_only_with_a_reason() -> None:
    # KServe's raw-deployment status marks a predictor that is not available yet False, no reason.
    assert ks.stage_of(isvc(conditions=conditions(PredictorReady="False")))[0] == "accepted"
    failing = conditions(PredictorReady=("False", "ProgressDeadlineExceeded", "too slow"))
    assert ks.stage_of(isvc(conditions=failing)) == (
        "failed", "ProgressDeadlineExceeded: too slow")  # fmt: skip
    info = {"reason": "ModelLoadFailed", "message": "bad pickle"}
    blocked = {"transitionStatus": "BlockedByFailedLoad", "lastFailureInfo": info}
    assert ks.status_of(isvc(conditions=[], modelStatus=blocked)) == (
        "Failed", "ModelLoadFailed: bad pickle")  # fmt: skip


def test_a_status_of_an_older_generation_says_nothing_of_the_new_one() -> None:
    stale = isvc(generation=2, observedGeneration=1, conditions=conditions(Ready="True"))
    assert ks.stage_of(stale) == ("accepted", None)
    assert ks.status_of(stale)[0] == "Loading"
    assert ks.status_of(isvc(2, observedGeneration=2, conditions=conditions(Ready="True")))[0] == (
        "Ready")  # fmt: skip


def test_knatives_traffic_targets_read_as_canary_and_stable() -> None:
    traffic = [{"revisionName": "iris-predictor-00002", "latestRevision": True, "percent": 20},
               {"revisionName": "iris-predictor-00001", "latestRevision": False, "percent": 80,
                "tag": "prev"}]  # fmt: skip
    view = ks.traffic_of(isvc(components={"predictor": {"traffic": traffic}}))
    assert view is not None
    assert [(a.variant, a.version, a.percent) for a in view.split] == [
        ("canary", "iris-predictor-00002", 20), ("stable", "iris-predictor-00001", 80)]  # fmt: skip
    assert ks.traffic_of(isvc()) is None


def api_error(code: int, body: dict[str, Any]) -> Exception:
    error = kubernetes.client.exceptions.ApiException(status=code, reason="x")
    error.body = json.dumps(body)
    return translate(error, "InferenceService", "iris", "ns")


def test_the_api_servers_status_becomes_one_line_naming_fields_and_managers() -> None:
    cause = {"field": "spec.predictor.minReplicas",
             "message": "Invalid value: \"string\": must be integer"}  # fmt: skip
    invalid = api_error(422, {"message": "InferenceService.serving.kserve.io \"iris\" is invalid",
                              "details": {"causes": [cause]}})  # fmt: skip
    assert isinstance(invalid, InvalidInputError)
    assert str(invalid) == ("InferenceService 'iris' refused by the API server: "
                            "spec.predictor.minReplicas: Invalid value: \"string\": must be "
                            "integer")  # fmt: skip
    conflict = api_error(409, {"message": "Apply failed with 1 conflict", "details": {"causes": [
        {"reason": "FieldManagerConflict", "field": ".spec.predictor.maxReplicas",
         "message": "conflict with \"ops\" using serving.kserve.io/v1beta1"}]}})  # fmt: skip
    assert isinstance(conflict, ConflictError)
    assert "spec.predictor.maxReplicas set by field manager 'ops'" in str(conflict)
    missing_crd = api_error(404, {"message": "the server could not find the requested resource",
                                  "details": {}})  # fmt: skip
    assert isinstance(missing_crd, NotFoundError)
    assert "is KServe installed?" in str(missing_crd)
    missing = api_error(404, {"details": {"name": "iris", "kind": "inferenceservices"}})
    assert str(missing) == "no InferenceService 'iris' in namespace 'ns'"


def graph(generation: int = 1, **status: Any) -> dict[str, Any]:
    steps = [{"name": "primary", "serviceName": "iris-primary", "weight": 70},
             {"name": "b", "serviceName": "iris-b", "weight": 30}]  # fmt: skip
    return {"metadata": {"name": "iris", "generation": generation},
            "spec": {"nodes": {"root": {"routerType": "Splitter", "steps": steps}}},
            "status": status}  # fmt: skip


READY = isvc(conditions=conditions(PredictorReady="True", Ready="True"))


def test_a_split_is_ready_only_when_the_graph_and_every_variant_are() -> None:
    services = {"iris-primary": READY, "iris-b": READY}
    ready_graph = graph(observedGeneration=1, conditions=conditions(Ready="True"))
    parts = kg._parts(ready_graph, services)
    assert (kg._status(parts), kg._stage(parts)) == (("Ready", None), ("ready", None))
    # Every model loaded, the graph's router not yet: loaded, and the graph is the reason.
    parts = kg._parts(graph(2, observedGeneration=1, conditions=conditions(Ready="True")), services)
    assert kg._stage(parts) == ("loaded", None)
    assert kg._status(parts) == ("Loading", "InferenceGraph 'iris': the controller has not "
                                 "reconciled this revision yet")  # fmt: skip
    # A variant still loading holds the stage back; a missing one is named.
    loading = isvc(conditions=conditions(PredictorRouteReady="True"))
    parts = kg._parts(ready_graph, {"iris-primary": READY, "iris-b": loading})
    assert kg._stage(parts) == ("scheduled", None)
    parts = kg._parts(ready_graph, {"iris-primary": READY})
    assert kg._status(parts) == ("Unknown", "InferenceService 'iris-b': missing: apply the "
                                 "deployment again")  # fmt: skip


def test_a_failing_part_fails_the_split_before_an_unknown_one() -> None:
    failing = isvc(conditions=conditions(Ready=("False", "ModelLoadFailed", "bad pickle")))
    parts = kg._parts(graph(), {"iris-primary": failing, "iris-b": READY})
    assert kg._status(parts) == ("Failed", "InferenceService 'iris-primary': ModelLoadFailed: "
                                 "bad pickle")  # fmt: skip
    assert kg._stage(parts)[0] == "failed"
    view = kg._traffic(graph(), {})
    assert [(a.variant, a.version, a.percent) for a in view.split] == [
        ("primary", "iris-primary", 70), ("b", "iris-b", 30)]  # fmt: skip
