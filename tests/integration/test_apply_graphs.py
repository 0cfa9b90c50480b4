"""`nstarx apply -f` with KServe InferenceGraphs: served by a real local server, or refused whole.

The fixtures are modelled on KServe's graph samples (docs/samples/graph: two iris services and a
graph over them), with models trained here: `iris-a` answers iris classes 0-2, `iris-b` the
classes plus 10, so an answer says who gave it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter.deployment.local import LocalBackend

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]

ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]  # KServe's iris-input.json, one row swapped
SERVICES = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris-a
spec:
  predictor:
    sklearn:
      storageUri: models/a
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris-b
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: models/b
"""


@pytest.fixture(scope="module")
def models(
    iris_data: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Two sklearn models trained here, saved as KServe's sklearn server reads them."""
    x, y = iris_data
    a = LogisticRegression(max_iter=1000, random_state=0).fit(x, y)
    b = LogisticRegression(max_iter=1000, random_state=0).fit(x, y + 10)
    root = tmp_path_factory.mktemp("graph-models")
    for name, model in {"a": a, "b": b}.items():
        (root / name).mkdir()
        joblib.dump(model, root / name / "model.joblib")
    return {"root": root, "a": a, "b": b}


@pytest.fixture
def backend(nstarx_home: Path) -> Iterator[LocalBackend]:
    """The local backend of this test's home; its server is stopped afterwards."""
    made = LocalBackend(nstarx_home / "server", timeout_s=60)
    yield made
    made.stop()


def _apply(models: dict[str, Any], text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`nstarx apply -f FILE` in a subprocess, the file beside the models folder."""
    folder = tmp_path / "manifests"
    (folder / "models").mkdir(parents=True, exist_ok=True)
    for name in ("a", "b"):
        link = folder / "models" / name
        if not link.exists():
            link.symlink_to(models["root"] / name)
    manifest = folder / "graph.yaml"
    manifest.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "nstarx_jupyter.cli", "apply", "-f", str(manifest)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def _predict(backend: LocalBackend, name: str, doc: Any) -> httpx.Response:
    state = backend.running()
    assert state is not None
    return httpx.post(f"{state.url}/v1/models/{name}:predict", json=doc, timeout=30)


def _classes(model: Any, rows: list[list[float]]) -> list[int]:
    return [int(c) for c in model.predict(np.array(rows))]


def test_a_sequence_graph_runs_its_steps_in_order_with_request_or_response(
    backend: LocalBackend, models: dict[str, Any], tmp_path: Path
) -> None:
    graph = """
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: model-chainer
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
        - serviceName: iris-a
        - serviceName: iris-b
          data: $request
    checked:
      routerType: Sequence
      steps:
        - serviceName: iris-a
        - serviceName: iris-b
          data: $response
          condition: "predictions.#(==0)"
"""
    applied = _apply(models, SERVICES + graph, tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "inferencegraph/model-chainer applied" in applied.stdout
    answer = _predict(backend, "model-chainer", {"instances": ROWS})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": _classes(models["b"], ROWS)}  # $request: b's own
    swapped = graph.replace("root:", "first:").replace("checked:", "root:")
    assert _apply(models, SERVICES + swapped, tmp_path).returncode == 0
    # iris-a answers class 0 for the second row: the condition holds, and iris-b gets iris-a's
    # answer ($response), which is neither a V1 request nor records iris-b can map to its
    # columns (a body without 'instances' is read as records, as a KServe split sends them):
    # its 400 is the graph's answer, as on KServe.
    answer = _predict(backend, "model-chainer", {"instances": ROWS})
    assert answer.status_code == 400, answer.text
    assert "records cannot be mapped" in answer.json()["error"]
    # No class 0 in iris-a's answer: the sequence stops there and answers it.
    answer = _predict(backend, "model-chainer", {"instances": ROWS[:1]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": _classes(models["a"], ROWS[:1])}
    # `nstarx delete NAME` takes a graph down too (its services stay)
    deleted = subprocess.run([sys.executable, "-m", "nstarx_jupyter.cli", "delete",
                              "model-chainer"], capture_output=True, text=True, timeout=60,
                             check=False)  # fmt: skip
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == "deleted inferencegraph model-chainer"
    assert backend.graphs() == []
    assert [d.name for d in backend.deployments()] == ["iris-a", "iris-b"]


def test_a_switch_graph_takes_the_first_step_whose_condition_holds(
    backend: LocalBackend, models: dict[str, Any], tmp_path: Path
) -> None:
    graph = """
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: model-switch
spec:
  nodes:
    root:
      routerType: Switch
      steps:
        - serviceName: iris-b
          condition: "[@this].#(source==client)"
        - serviceName: iris-a
          condition: "instances.#(0>6)"
"""
    applied = _apply(models, SERVICES + graph, tmp_path)
    assert applied.returncode == 0, applied.stderr
    long_sepal = _predict(backend, "model-switch", {"instances": ROWS})
    assert long_sepal.json() == {"predictions": _classes(models["a"], ROWS)}
    from_client = _predict(backend, "model-switch", {"source": "client", "instances": ROWS})
    assert from_client.json() == {"predictions": _classes(models["b"], ROWS)}  # the first match
    neither = _predict(backend, "model-switch", {"instances": [ROWS[1]]})
    assert neither.status_code == 404  # KServe's router: no route matched
    assert "None of the routes matched" in neither.json()["cause"]


def test_a_splitter_graph_shares_requests_by_weight(
    backend: LocalBackend, models: dict[str, Any], tmp_path: Path
) -> None:
    graph = """
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: splitter-model
spec:
  nodes:
    root:
      routerType: Splitter
      steps:
        - serviceName: iris-a
          weight: 20
        - serviceName: iris-b
          weight: 80
"""
    applied = _apply(models, SERVICES + graph, tmp_path)
    assert applied.returncode == 0, applied.stderr
    sent = 300
    to_a = 0
    for _ in range(sent):
        answer = _predict(backend, "splitter-model", {"instances": [ROWS[0]]})
        assert answer.status_code == 200, answer.text
        to_a += answer.json()["predictions"][0] < 10
    # 20 % of 300 is 60, sd 6.9: 35..85 is more than 3.5 sd either side
    assert 35 <= to_a <= 85, to_a


def test_an_ensemble_graph_merges_every_steps_answer_by_step_name(
    backend: LocalBackend, models: dict[str, Any], tmp_path: Path
) -> None:
    graph = """
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: ensemble-model
spec:
  nodes:
    root:
      routerType: Ensemble
      steps:
        - serviceName: iris-a
          name: iris-a
        - nodeName: second
          name: via-node
    second:
      routerType: Sequence
      steps:
        - serviceName: iris-b
"""
    applied = _apply(models, SERVICES + graph, tmp_path)
    assert applied.returncode == 0, applied.stderr
    answer = _predict(backend, "ensemble-model", {"instances": ROWS})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "iris-a": {"predictions": _classes(models["a"], ROWS)},
        "via-node": {"predictions": _classes(models["b"], ROWS)},
    }


def test_a_graph_step_calls_a_deployed_v2_service_at_its_v2_path(
    backend: LocalBackend, models: dict[str, Any], tmp_path: Path
) -> None:
    deployed = subprocess.run(
        [sys.executable, "-m", "nstarx_jupyter.cli", "deploy", "iris-v2",
         str(models["root"] / "a"), "--no-auth"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    graph = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: v2-graph
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
        - serviceName: iris-v2
"""
    applied = _apply(models, graph, tmp_path)
    assert applied.returncode == 0, applied.stderr
    flat = [value for row in ROWS for value in row]
    request = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": flat}]}
    answer = _predict(backend, "v2-graph", request)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == _classes(models["a"], ROWS)


def test_a_file_with_one_bad_document_applies_nothing(
    backend: LocalBackend, models: dict[str, Any], tmp_path: Path
) -> None:
    graph = """
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: model-switch
spec:
  nodes:
    root:
      routerType: Switch
      steps:
        - serviceName: iris-a
          condition: "instances.#(name%\\"*red*\\")#|@reverse"
"""
    refused = _apply(models, SERVICES + graph, tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith("nstarx apply: inferencegraph/model-switch: ")
    assert "spec.nodes.root.steps[0].condition" in refused.stderr
    assert "@reverse" in refused.stderr
    assert backend.deployments() == []  # iris-a and iris-b were checked, not applied
    nameless = graph.replace("condition: \"instances.#(name%\\\"*red*\\\")#|@reverse\"",
                             "condition: \"@this\"").replace("iris-a", "iris-c")  # fmt: skip
    refused = _apply(models, SERVICES + nameless, tmp_path)
    assert refused.returncode == 2
    assert "steps[0].serviceName: no InferenceService 'iris-c'" in refused.stderr
    assert backend.deployments() == []
    assert backend.graphs() == []


def test_a_file_that_fails_midway_removes_what_it_added_and_a_graph_survives_a_restart(
    backend: LocalBackend, models: dict[str, Any], tmp_path: Path
) -> None:
    graph = """
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: chain
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
        - serviceName: iris-a
"""
    assert _apply(models, SERVICES.replace("iris-b", "iris-a", 1), tmp_path).returncode == 2
    applied = _apply(models, SERVICES.split("---")[0] + graph, tmp_path)
    assert applied.returncode == 0, applied.stderr
    broken = SERVICES.replace("iris-a", "iris-c").replace("models/b", "not-a-model") + graph
    (tmp_path / "manifests" / "not-a-model").mkdir()
    (tmp_path / "manifests" / "not-a-model" / "model.joblib").write_bytes(b"not a pickle")
    failed = _apply(models, broken, tmp_path)  # iris-b's model does not load: found on applying
    assert failed.returncode == 2
    assert failed.stderr.startswith("nstarx apply: inferenceservice/iris-b: ")
    assert "removed again what graph.yaml added: iris-c, iris-b" in failed.stderr
    assert [d.name for d in backend.deployments()] == ["iris-a"]
    assert [g.name for g in backend.graphs()] == ["chain"]
    backend.stop()
    backend.ensure_server()
    answer = _predict(backend, "chain", {"instances": ROWS})
    assert answer.json() == {"predictions": _classes(models["a"], ROWS)}


def test_the_report_lists_every_document_and_each_field_left_aside(
    backend: LocalBackend, models: dict[str, Any], tmp_path: Path
) -> None:
    text = """
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  name: kserve-sklearnserver
spec:
  supportedModelFormats: [{name: sklearn, version: "1"}]
  containers:
    - name: kserve-container
      image: kserve/sklearnserver:latest
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris-a
spec:
  predictor:
    logger:
      mode: all
      url: http://message-dumper.default/
    sklearn:
      storageUri: models/a
      readinessProbe:
        httpGet: {path: /v1/models/iris-a, port: 8080}
      livenessProbe:
        httpGet: {path: /v2/health/live, port: 8080}
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: one-step
spec:
  routerTimeouts: {serviceClient: 30}
  nodes:
    root:
      routerType: Sequence
      steps:
        - serviceName: iris-a
"""
    applied = _apply(models, text, tmp_path)
    assert applied.returncode == 0, applied.stderr
    lines = applied.stdout.splitlines()
    assert lines[0].startswith("servingruntime/kserve-sklearnserver accepted, not used here")
    assert lines[1] == "inferenceservice/iris-a applied"
    assert lines[2].startswith("inferenceservice/iris-a: spec.predictor.logger: sent: the local")
    assert lines[3].startswith("inferenceservice/iris-a: spec.predictor.sklearn.readinessProbe")
    assert lines[4].startswith("inferenceservice/iris-a: spec.predictor.sklearn.livenessProbe")
    assert lines[5].startswith("inferencegraph/one-step applied: POST http")
    assert lines[5].endswith("/v1/models/one-step:predict")
    assert lines[6].startswith("inferencegraph/one-step: spec.routerTimeouts: ignored")
    assert len(lines) == 7
    assert _predict(backend, "one-step", {"instances": ROWS}).json() == {
        "predictions": _classes(models["a"], ROWS)
    }
