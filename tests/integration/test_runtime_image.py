"""The runtime image's contract: the ClusterServingRuntime, the Dockerfile and `nstarx serve` agree.

No image is built here (no builder on these machines): what is checked is that the manifest
validates, names the image the package's manifests name, and that `nstarx serve` started with
exactly the container's arguments serves the model; only the model folder, the ports (free ones)
and the address (loopback: tests listen nowhere else) are put in for the pod's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import numpy as np
import pytest
import yaml

from nstarx_jupyter.cli.parser import build_parser
from nstarx_jupyter.deployment.kserve import (
    DEFAULT_IMAGE,
    cluster_serving_runtime,
    to_manifests,
    validate_manifest,
)
from nstarx_jupyter.deployment.spec import DeploymentSpec
from tests.integration.server import ROOT, start_server

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.integration

MANIFEST = ROOT / "deploy" / "kserve" / "clusterservingruntime.yaml"


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_the_cluster_serving_runtime_validates_and_names_the_packages_image() -> None:
    doc = yaml.safe_load(MANIFEST.read_text())
    validate_manifest(doc)
    assert doc["kind"] == "ClusterServingRuntime"
    assert doc == cluster_serving_runtime()  # regenerate the file when this fails
    container = _container(doc)
    assert container["image"] == DEFAULT_IMAGE
    # The namespaced runtime that deploy(target="kserve") applies runs the same container.
    namespaced = to_manifests(DeploymentSpec(name="iris", storage_uri="s3://models/iris"))[0]
    assert namespaced["kind"] == "ServingRuntime"
    assert _container(namespaced) == container
    assert [p["containerPort"] for p in container["ports"]] == [8080]


def test_the_dockerfile_runs_nstarx_with_arguments_the_cli_takes() -> None:
    text = (ROOT / "Dockerfile").read_text()
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE)
    assert entrypoint is not None
    assert json.loads(entrypoint.group(1)) == ["nstarx"]  # the runtime's args start with serve
    command = re.search(r"^CMD (\[.*?\])$", text.replace("\\\n", ""), re.MULTILINE | re.DOTALL)
    assert command is not None
    args = build_parser().parse_args(json.loads(command.group(1)))
    assert (args.model_name, args.model_dir, args.port, args.grpc_port) == (
        "model", "/mnt/models", 8080, 8081)  # fmt: skip
    assert "EXPOSE 8080 8081" in text
    assert DEFAULT_IMAGE.rsplit(":", 1)[0] in text  # the build command tags the manifests' image


def test_nstarx_serve_starts_with_the_runtime_containers_arguments(
    iris_path: Path, iris_model: LogisticRegression, tmp_path: Path
) -> None:
    mounted = tmp_path / "mnt-models"  # what the storage initializer leaves in /mnt/models
    mounted.mkdir()
    (mounted / "model.joblib").write_bytes(iris_path.read_bytes())
    args = [arg.replace("{{.Name}}", "sklearn-iris").replace("/mnt/models", str(mounted))
            .replace("=8080", "=0").replace("=8081", "=0").replace("=0.0.0.0", "=127.0.0.1")
            for arg in _container(yaml.safe_load(MANIFEST.read_text()))["args"]]  # fmt: skip
    assert args[0] == "serve"
    server = start_server(*args[1:])
    try:
        assert server.grpc is not None  # --grpc_port: the V2 gRPC listener is up too
        row = [6.8, 2.8, 4.8, 1.4]
        answer = httpx.post(f"{server.url}/v1/models/sklearn-iris:predict",
                            json={"instances": [row]}, timeout=30)  # fmt: skip
        assert answer.status_code == 200, answer.text  # --no-auth: no key in the pod
        assert answer.json() == {"predictions": [int(iris_model.predict(np.array([row]))[0])]}
        with grpc.insecure_channel(server.grpc) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
    finally:
        server.stop()
