"""`plan_file`: what `nstarx apply -f` decides about each document before it applies any."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import yaml

from nstarx_jupyter.deployment.manifests import plan_file
from nstarx_jupyter.errors import InvalidInputError

if TYPE_CHECKING:
    from pathlib import Path

ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: NAME}
spec:
  predictor:
    sklearn: {storageUri: models/iris}
"""
GRAPH = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: NAME}
spec:
  nodes:
    root:
      routerType: Sequence
      steps: [{serviceName: SERVICE}]
"""


def _docs(*texts: str) -> list[Any]:
    return [yaml.safe_load(text) for text in texts]


def _never() -> dict[str, str]:
    raise AssertionError("asked what is deployed")


def test_a_file_without_graphs_never_asks_what_is_deployed(tmp_path: Path) -> None:
    (tmp_path / "models" / "iris").mkdir(parents=True)
    plan = plan_file(tmp_path / "f.yaml", _docs(ISVC.replace("NAME", "iris")), _never)
    assert [spec.name for spec in plan.services] == ["iris"]
    assert plan.services[0].storage_uri == str((tmp_path / "models" / "iris").resolve())
    assert plan.services[0].trusted
    assert plan.lines("http://h") == ["inferenceservice/iris applied"]


def test_a_graph_calls_a_service_of_the_file_or_a_deployed_one_at_its_protocol(
    tmp_path: Path,
) -> None:
    (tmp_path / "models" / "iris").mkdir(parents=True)
    docs = _docs(ISVC.replace("NAME", "iris"),
                 GRAPH.replace("NAME", "g1").replace("SERVICE", "iris"),
                 GRAPH.replace("NAME", "g2").replace("SERVICE", "deployed"))  # fmt: skip
    plan = plan_file(tmp_path / "f.yaml", docs, lambda: {"deployed": "v2", "iris": "v2"})
    assert [graph.protocols for graph in plan.graphs] == [{"iris": "v1"}, {"deployed": "v2"}]
    assert plan.lines("http://h:1")[1:] == [
        "inferencegraph/g1 applied: POST http://h:1/v1/models/g1:predict",
        "inferencegraph/g2 applied: POST http://h:1/v1/models/g2:predict",
    ]


@pytest.mark.parametrize(
    ("texts", "served", "message"),
    [
        ([GRAPH.replace("NAME", "g").replace("SERVICE", "flow")], {"flow": "pipeline"},
         "inferencegraph/g: spec.nodes.root.steps[0].serviceName: 'flow' is a pipeline"),
        ([GRAPH.replace("NAME", "iris").replace("SERVICE", "x")], {"iris": "v2", "x": "v1"},
         "inferencegraph/iris: metadata.name: a deployment is already served as 'iris'"),
        ([ISVC.replace("NAME", "g"), GRAPH.replace("NAME", "g").replace("SERVICE", "g")], {},
         "inferencegraph/g: metadata.name: an InferenceService of this file is named 'g'"),
        ([ISVC.replace("NAME", "a"), ISVC.replace("NAME", "a")], {},
         "inferenceservice/a: named twice"),
        ([ISVC.replace("NAME", "a").replace("  predictor:", "  transformer: {}\n  predictor:")],
         {}, "inferenceservice/a: spec.transformer"),
        (["kind: Deployment\nmetadata: {name: web}"], {}, "deployment/web: kind: 'Deployment'"),
        (["- just a list"], {}, "document 1: a manifest must be a mapping"),
        ([GRAPH.replace("NAME", "Bad").replace("SERVICE", "x")], {"x": "v1"},
         "inferencegraph/Bad: "),
        ([ISVC.replace("NAME", "a").replace("models/iris", "gs://kfserving-examples/iris")], {},
         "inferenceservice/a: spec.predictor.sklearn.storageUri: 'gs://kfserving-examples/iris' "
         "is not on this machine"),
        ([ISVC.replace("NAME", "a").replace("models/iris", "models/gone")], {},
         "inferenceservice/a: spec.predictor.sklearn.storageUri: "),
    ],
)  # fmt: skip
def test_the_first_document_that_cannot_apply_refuses_the_file_by_name(
    tmp_path: Path, texts: list[str], served: dict[str, str], message: str
) -> None:
    (tmp_path / "models" / "iris").mkdir(parents=True)
    with pytest.raises(InvalidInputError) as refused:
        plan_file(tmp_path / "f.yaml", _docs(*texts), lambda: served)
    assert refused.value.message.startswith(message)


def test_a_registry_storage_uri_stays_a_registry_uri(tmp_path: Path) -> None:
    doc = ISVC.replace("NAME", "iris").replace("models/iris", "'models:/iris/3'")
    plan = plan_file(tmp_path / "f.yaml", _docs(doc), _never)
    assert plan.services[0].storage_uri == "models:/iris/3"  # not a path beside the file
