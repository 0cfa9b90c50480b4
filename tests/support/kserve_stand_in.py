"""KServe's part in the KServe tests: a controller loop and a model server standing in for a pod.

The API server stores InferenceServices but nothing reconciles them. `StandIn` does what KServe's
controller, its storage initializer and the predictor pod would: it watches the namespace's
InferenceServices, and for each new generation marks the predictor scheduled, "downloads" the
storage URI from a real S3-compatible server (tests/support/s3.py) as KServe's storage
initializer would, serves the model on one local `nstarx serve` (the same server our runtime image
runs, with the same canary semantics), then writes `Ready`, the URL and the traffic through the
status subresource (`FakeController`), or a failed `PredictorReady` with the load's message.
It reconciles InferenceGraphs too, as KServe's graph reconciler and router would: each new
generation is served on the same local server (its `/nstarx/v1/graphs` route, KServe's router
semantics, each `serviceName` step calling the deployment the service became there), then `Ready`
and the router's URL are written to the graph's status.
Nothing here is mocked but the cluster's compute: the API server, its watch, the status
subresource, the object store and the model server are real.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import TYPE_CHECKING, Any

import httpx

from nstarx_jupyter.deployment.kserve_backend import spec_of
from nstarx_jupyter.security import admin_token
from nstarx_jupyter.security.home import security_dir
from tests.integration.server import start_server
from tests.support.kube import GROUP, FakeController

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import TracebackType

    from tests.integration.server import ServerProcess
    from tests.support.kube import Cluster
    from tests.support.s3 import S3Server

__all__ = ["StandIn"]


class StandIn:
    """Reconciles one namespace's InferenceServices onto a local model server, in a thread."""

    def __init__(self, cluster: Cluster, namespace: str, s3: S3Server, state: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.s3 = s3
        self.pods = state / "pods"
        """Where each revision's model is downloaded (the pod's /mnt/models)."""
        self.controller = FakeController(cluster, namespace)
        self.server: ServerProcess = start_server("--state-dir", str(state))
        self.token = admin_token(security_dir())
        self.reconciled: dict[str, int] = {}
        """Per InferenceService, the generation last reconciled."""
        self.graphs: dict[str, int] = {}
        """Per InferenceGraph, the generation last reconciled."""
        self.errors: list[str] = []
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=("v1beta1", "inferenceservices",
                             self._reconcile), daemon=True, name="kserve-stand-in"),
            threading.Thread(target=self._run, args=("v1alpha1", "inferencegraphs",
                             self._reconcile_graph), daemon=True, name="kserve-stand-in-graphs"),
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """Where the stand-in pod answers (what `status.url` says)."""
        return self.server.url

    def __enter__(self) -> StandIn:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.server.stop()

    def _run(
        self, version: str, plural: str, reconcile: Callable[[str, dict[str, Any]], None]
    ) -> None:
        path = f"/apis/{GROUP}/{version}/namespaces/{self.namespace}/{plural}"
        while not self._done.is_set():
            try:
                with self.cluster.http() as http:
                    listed = http.get(path).json()
                    for item in listed.get("items", []):
                        reconcile("MODIFIED", item)
                    query = {"watch": "true", "timeoutSeconds": "2",
                             "resourceVersion": listed["metadata"]["resourceVersion"]}  # fmt: skip
                    with http.stream("GET", path, params=query, timeout=10) as events:
                        for line in events.iter_lines():
                            if self._done.is_set():
                                return
                            if line:
                                event = json.loads(line)
                                reconcile(event["type"], event["object"])
            except Exception as exc:  # noqa: BLE001 - a test thread: keep the reason, go on
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _reconcile(self, kind: str, isvc: dict[str, Any]) -> None:
        name = isvc["metadata"]["name"]
        if kind == "DELETED":
            self.reconciled.pop(name, None)
            self._control("DELETE", f"/deployments/{name}")
            return
        generation = int(isvc["metadata"]["generation"])
        if self.reconciled.get(name) == generation:
            return  # a status write of ours, or nothing new
        self.reconciled[name] = generation
        self.controller.conditions(name, PredictorConfigurationReady="True")
        spec = spec_of(isvc)  # as KServe reads it: the stored object has a status too
        uri = spec.storage_uri or ""
        local = self.pods / f"{name}-{generation:05d}"
        if not uri.startswith("s3://") or not self.s3.download(uri, local):
            self._failed(name, "StorageInitializerFailed", f"cannot download {uri}: not found")
            return
        doc = spec.replace(storage_uri=str(local), namespace=None, auth=False, trusted=True)
        # On a cluster a graph and a service of one name have hosts of their own; here they
        # share the server's names, and the newer one (a split undone) takes the name.
        self._control("DELETE", f"/graphs/{name}")
        answer = self._control("PUT", f"/deployments/{name}", doc.model_dump(
            mode="json", exclude_defaults=True))  # fmt: skip
        if answer.status_code >= 400:
            self._failed(name, "ModelLoadFailed", answer.json().get("error", answer.text))
            return
        self.controller.ready(name, self.url, canary_percent=spec.canary_traffic_percent)
        self.controller.event(name, "InferenceServiceReady", f"InferenceService [{name}] is Ready")

    def _reconcile_graph(self, kind: str, graph: dict[str, Any]) -> None:
        name = graph["metadata"]["name"]
        if kind == "DELETED":
            self.graphs.pop(name, None)
            self._control("DELETE", f"/graphs/{name}")
            return
        generation = int(graph["metadata"]["generation"])
        if self.graphs.get(name) == generation:
            return  # a status write of ours, or nothing new
        self.graphs[name] = generation
        nodes = graph["spec"]["nodes"]
        services = {step["serviceName"] for node in nodes.values()
                    for step in node.get("steps", []) if step.get("serviceName")}  # fmt: skip
        annotations = graph["metadata"].get("annotations", {})
        protocols = {service: self._protocol(service) for service in sorted(services)}
        auth = annotations.get("security.opendatahub.io/enable-auth") == "true"
        body = {"name": name, "nodes": nodes, "protocols": protocols, "auth": auth}
        self._control("DELETE", f"/deployments/{name}")  # the one-model deployment it replaces
        answer = self._control("PUT", f"/graphs/{name}", body)
        if answer.status_code >= 400:
            self.controller.graph(name, Ready=("False", "InvalidGraph", answer.text))
            return
        self.controller.graph(name, self.url, Ready="True")

    def _protocol(self, service: str) -> str:
        """The protocol KServe's router calls a service with: its predictor's V1 or V2."""
        try:
            isvc = self.controller.get(service)
        except httpx.HTTPStatusError:
            return "v1"
        version = isvc["spec"]["predictor"].get("model", {}).get("protocolVersion", "v1")
        return "v1" if version == "v1" else "v2"

    def _failed(self, name: str, reason: str, message: str) -> None:
        self.controller.conditions(
            name, PredictorConfigurationReady="True", PredictorReady=("False", reason, message),
            Ready=("False", reason, message),
        )  # fmt: skip
        self.controller.event(name, "InternalError", f"{reason}: {message}", kind="Warning")

    def _control(self, method: str, path: str, body: Any = None) -> httpx.Response:
        with contextlib.closing(httpx.Client(timeout=60)) as http:
            return http.request(method, f"{self.url}/nstarx/v1{path}", json=body,
                                headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip
