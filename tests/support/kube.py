"""A real Kubernetes API server for tests: etcd + kube-apiserver on free loopback ports.

No kubelet and no controllers: the API server alone gives the KServe CRDs, server-side schema
validation, server-side apply, the status subresource and watches, which is what the KServe
backend talks to (../shared/TOOLCHAIN.md section 12). `FakeController` plays KServe's part by
writing `status` through the status subresource.

Binaries: `kube-apiserver` from `$NSTARX_K8S_BIN` (default `~/.cache/nstarx-k8s/bin`, built by
`.ci/build-kube-apiserver.sh`), `etcd` on the PATH (Debian's etcd-server).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import nstarx_jupyter.deployment

if TYPE_CHECKING:
    from collections.abc import Iterator

CRD_DIR = Path(nstarx_jupyter.deployment.__file__).parent / "schemas" / "crd"
GROUP = "serving.kserve.io"
START_TIMEOUT_S = 90.0


def binaries() -> tuple[Path, Path] | str:
    """(kube-apiserver, etcd), or why they are missing."""
    folder = Path(os.environ.get("NSTARX_K8S_BIN", "~/.cache/nstarx-k8s/bin")).expanduser()
    apiserver = folder / "kube-apiserver"
    etcd = shutil.which("etcd")
    if not apiserver.is_file():
        return (f"{apiserver} is missing: build it with .ci/build-kube-apiserver.sh {folder} "
                "(about 15 min) or point NSTARX_K8S_BIN at a folder holding it")  # fmt: skip
    if etcd is None:
        return "etcd is not on the PATH: apt-get install -y etcd-server"
    return apiserver, Path(etcd)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A running etcd + kube-apiserver with the KServe CRDs installed."""

    url: str
    token: str
    ca_file: Path
    kubeconfig: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    user_token: str = ""
    """The token of the user `limited`, who may do only what a test's RBAC Role grants."""

    def http(self) -> httpx.Client:
        """An HTTP client for the API server with the admin token."""
        return httpx.Client(base_url=self.url, verify=_trust(self.ca_file), timeout=30,
                            headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip


def _trust(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def _wait(check: Any, what: str, timeout_s: float, process: subprocess.Popen[bytes],
          log: Path) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout_s} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_cluster(base: Path) -> Iterator[Cluster]:
    """Start etcd and kube-apiserver in `base`, install the KServe CRDs; stop both after."""
    found = binaries()
    if isinstance(found, str):
        raise RuntimeError(found)
    apiserver, etcd = found
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = time.monotonic()
        etcd_url = _start_etcd(etcd, base, processes)
        timings = {"etcd_ready_s": time.monotonic() - started}
        cluster = _start_apiserver(apiserver, base, etcd_url, processes)
        timings["apiserver_ready_s"] = time.monotonic() - started
        cluster.timings_s = timings
        with cluster.http() as http:
            _install_crds(http)
        timings["crds_served_s"] = time.monotonic() - started
        yield cluster
    finally:
        for process in reversed(processes):
            _stop(process)


def _start_etcd(etcd: Path, base: Path, processes: list[subprocess.Popen[bytes]]) -> str:
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    log = base / "etcd.log"
    args = [str(etcd), "--name", "test", "--data-dir", str(base / "etcd"),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"test={peer_url}", "--unsafe-no-fsync",
            "--max-request-bytes", "10485760"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    processes.append(process)

    def healthy() -> bool:
        return httpx.get(f"{client_url}/health", timeout=2).status_code == 200

    _wait(healthy, "etcd", 30, process, log)
    return client_url


def _start_apiserver(
    apiserver: Path, base: Path, etcd_url: str, processes: list[subprocess.Popen[bytes]]
) -> Cluster:
    token, user_token = secrets.token_hex(16), secrets.token_hex(16)
    (base / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n'
                                     f"{user_token},limited,limited-uid\n")  # fmt: skip
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (base / "sa.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))  # fmt: skip
    port = free_port()
    cert_dir = base / "certs"
    log = base / "kube-apiserver.log"
    args = [str(apiserver), "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
            "--secure-port", str(port), "--cert-dir", str(cert_dir),
            "--token-auth-file", str(base / "tokens.csv"), "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(base / "sa.key"),
            "--service-account-signing-key-file", str(base / "sa.key"),
            "--service-cluster-ip-range", "10.0.0.0/24", "--endpoint-reconciler-type", "none",
            "--disable-admission-plugins", "ServiceAccount",
            "--enable-priority-and-fairness=false"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    processes.append(process)
    url = f"https://127.0.0.1:{port}"
    ca_file = cert_dir / "apiserver.crt"  # self-signed by the API server: its own CA

    def ready() -> bool:
        if not ca_file.exists():
            return False
        answer = httpx.get(f"{url}/readyz", verify=_trust(ca_file), timeout=5,
                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        return answer.status_code == 200

    _wait(ready, "kube-apiserver", START_TIMEOUT_S, process, log)
    kubeconfig = base / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nstarx-test",
        "clusters": [{"name": "test", "cluster": {"server": url,
                                                  "certificate-authority": str(ca_file)}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "nstarx-test", "context": {"cluster": "test", "user": "admin",
                                                         "namespace": "default"}}],
    }))  # fmt: skip
    return Cluster(url, token, ca_file, kubeconfig, processes, user_token=user_token)


def _install_crds(http: httpx.Client) -> None:
    """Server-side apply the packaged KServe CRDs, then wait until discovery serves them."""
    for path in sorted(CRD_DIR.glob("*.json")):
        crd = json.loads(path.read_text())
        answer = http.patch(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
            params={"fieldManager": "nstarx-tests", "force": "true"},
            content=path.read_bytes(), headers={"Content-Type": "application/apply-patch+yaml"},
            timeout=120,
        )  # fmt: skip
        answer.raise_for_status()
    wanted = {
        "v1beta1": {"inferenceservices"},
        "v1alpha1": {"servingruntimes", "clusterservingruntimes", "inferencegraphs"},
    }
    deadline = time.monotonic() + 60
    while wanted and time.monotonic() < deadline:
        for version in list(wanted):
            answer = http.get(f"/apis/{GROUP}/{version}")
            if answer.status_code == 200:
                served = {resource["name"] for resource in answer.json()["resources"]}
                if wanted[version] <= served:
                    del wanted[version]
        if wanted:
            time.sleep(0.2)
    if wanted:
        raise RuntimeError(f"the API server does not serve {wanted} after 60 s")


def create_namespace(cluster: Cluster, name: str) -> None:
    """A namespace for one test (nothing deletes its objects: no controllers run here)."""
    with cluster.http() as http:
        answer = http.post("/api/v1/namespaces", json={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})  # fmt: skip
        answer.raise_for_status()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeController:
    """Plays KServe's controller: writes an InferenceService's `status` as KServe would.

    What it writes follows KServe v0.20's `inference_service_status.go` and the Knative
    reconciler: the conditions `PredictorConfigurationReady` / `PredictorRouteReady` (from the
    Knative service's ConfigurationsReady / RoutesReady), `PredictorReady`, `IngressReady` and
    `Ready` (= PredictorReady and IngressReady); `url`; `observedGeneration`; and
    `components.predictor.traffic`, Knative's traffic targets: the latest revision with
    `latestRevision: true` and, during a canary, the last rolled-out one with `tag: prev`.
    """

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def _path(self, name: str, plural: str = "inferenceservices") -> str:
        version = "v1beta1" if plural == "inferenceservices" else "v1alpha1"
        return f"/apis/{GROUP}/{version}/namespaces/{self.namespace}/{plural}/{name}"

    def get(self, name: str, plural: str = "inferenceservices") -> dict[str, Any]:
        """The InferenceService (or another kind by `plural`) as stored."""
        with self.cluster.http() as http:
            answer = http.get(self._path(name, plural))
            answer.raise_for_status()
            return dict(answer.json())

    def write(self, name: str, status: dict[str, Any], plural: str = "inferenceservices") -> None:
        """Merge `status` into the status subresource (lists are replaced whole)."""
        with self.cluster.http() as http:
            answer = http.patch(
                f"{self._path(name, plural)}/status", content=json.dumps({"status": status}),
                headers={"Content-Type": "application/merge-patch+json"},
            )  # fmt: skip
            answer.raise_for_status()

    def graph(self, name: str, url: str | None = None, **ready: str | tuple[str, str, str]) -> None:
        """An InferenceGraph's status as KServe's graph reconciler writes it.

        `Ready="True"` (with the router's `url`) or `Ready=("False", reason, message)`, for the
        current generation; KServe's `InferenceGraphStatus` has `conditions`, `url`,
        `observedGeneration` and `deploymentMode`, and its graph reconciler sets the one
        condition `Ready` (from the router's Deployment, or copied from its Knative Service).
        """
        generation = self.get(name, "inferencegraphs")["metadata"]["generation"]
        state = ready.get("Ready", "Unknown")
        status, reason, message = (state, "", "") if isinstance(state, str) else state
        row = {"type": "Ready", "status": status, "lastTransitionTime": _now()}
        if reason:
            row.update(reason=reason, message=message)
        doc: dict[str, Any] = {"observedGeneration": generation, "conditions": [row],
                               "deploymentMode": "Serverless"}  # fmt: skip
        if url is not None:
            doc["url"] = url
        self.write(name, doc, "inferencegraphs")

    def conditions(
        self, name: str, extra: dict[str, Any] | None = None, **states: str | tuple[str, str, str]
    ) -> None:
        """Set conditions: `Ready="True"` or `PredictorReady=("False", reason, message)`.

        `extra` goes into the same status update (KServe writes one status per reconcile).
        """
        generation = self.get(name)["metadata"]["generation"]
        rows = []
        for kind in ("PredictorConfigurationReady", "PredictorRouteReady", "PredictorReady",
                     "IngressReady", "Ready"):  # fmt: skip
            state = states.get(kind, "Unknown")
            status, reason, message = (state, "", "") if isinstance(state, str) else state
            row = {"type": kind, "status": status, "lastTransitionTime": _now()}
            if reason:
                row.update(reason=reason, message=message)
            rows.append(row)
        self.write(name, {"observedGeneration": generation, "conditions": rows, **(extra or {})})

    def event(self, name: str, reason: str, message: str, kind: str = "Normal") -> None:
        """Record a core/v1 Event on the InferenceService, as KServe's event recorder does
        (`InferenceServiceReady`, `InferenceServiceNotReady`...)."""
        uid = self.get(name)["metadata"]["uid"]
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": self.namespace},
            "involvedObject": {"apiVersion": f"{GROUP}/v1beta1", "kind": "InferenceService",
                               "name": name, "namespace": self.namespace, "uid": uid},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": "kserve-controller"}, "firstTimestamp": _now(),
            "lastTimestamp": _now(), "count": 1,
        }  # fmt: skip
        with self.cluster.http() as http:
            answer = http.post(f"/api/v1/namespaces/{self.namespace}/events", json=body)
            answer.raise_for_status()

    def ready(self, name: str, url: str, *, canary_percent: int | None = None) -> None:
        """All conditions True, the URL, and the traffic of the current generation."""
        generation = self.get(name)["metadata"]["generation"]
        latest = f"{name}-predictor-{generation:05d}"
        traffic: list[dict[str, Any]] = [{"revisionName": latest, "latestRevision": True,
                                          "percent": 100}]  # fmt: skip
        if canary_percent is not None and canary_percent < 100 and generation > 1:
            traffic = [{"revisionName": latest, "latestRevision": True, "percent": canary_percent},
                       {"revisionName": f"{name}-predictor-{generation - 1:05d}", "tag": "prev",
                        "latestRevision": False, "percent": 100 - canary_percent}]  # fmt: skip
        extra = {"url": url, "components": {"predictor": {
            "url": url, "latestCreatedRevision": latest, "latestReadyRevision": latest,
            "traffic": traffic}}}  # fmt: skip
        self.conditions(name, extra, **dict.fromkeys(
            ("PredictorConfigurationReady", "PredictorRouteReady", "PredictorReady",
             "IngressReady", "Ready"), "True"))  # fmt: skip


# -- fixtures (import them into a test module) ---------------------------------------------------


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One etcd + kube-apiserver with the KServe CRDs for the session.

    Skips when the binaries are missing, or FAILS when `NSTARX_REQUIRE_K8S=1` (CI).
    """
    found = binaries()
    if isinstance(found, str):
        if os.environ.get("NSTARX_REQUIRE_K8S") == "1":
            pytest.fail(found)
        pytest.skip(found)
    with running_cluster(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


@pytest.fixture
def kube_namespace(kube_cluster: Cluster) -> str:
    """A fresh namespace for one test."""
    name = f"t-{secrets.token_hex(4)}"
    create_namespace(kube_cluster, name)
    return name
