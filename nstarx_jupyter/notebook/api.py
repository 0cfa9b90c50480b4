"""`deploy()` and `Deployment`: a model behind an authenticated endpoint in one call.

The notebook's handle on a deployment, thin over `DeploymentService`: it takes fitted models
(registering them behind the deployment), mints the caller's API key on the local server, shows
the way to `Ready` as it goes, and shows itself as a card with a test form. The same calls work
on the local server (`target="local"`) and on a KServe cluster (`target="kserve"`).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.client import InferenceClient
from nstarx_jupyter.deployment.export.optimize import DEFAULT_TOLERANCE
from nstarx_jupyter.deployment.service import DeploymentService, backend_for
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.model_uri import is_registry_uri
from nstarx_jupyter.monitoring.live import LatencyChart, LoadTest
from nstarx_jupyter.notebook.batch import BatchMixin
from nstarx_jupyter.notebook.drift import DriftMixin
from nstarx_jupyter.notebook.examples import first_record, model_example
from nstarx_jupyter.notebook.explain import ExplainMixin
from nstarx_jupyter.notebook.export import ExportMixin, show_optimization
from nstarx_jupyter.notebook.rollout import RolloutMixin
from nstarx_jupyter.notebook.security import audit_log, create_key, rotate_key
from nstarx_jupyter.notebook.usage import UsageMixin
from nstarx_jupyter.security import key_prefix

if TYPE_CHECKING:
    from concurrent.futures import Future

    import pandas as pd

    from nstarx_jupyter.deployment.backend import Backend, Description, Progress, Target
    from nstarx_jupyter.deployment.spec import DeploymentSpec
    from nstarx_jupyter.registry import ModelVersion

log = logging.getLogger(__name__)

__all__ = ["Deployment", "deploy"]

READY_TIMEOUT_S = 600.0
"""How long `deploy()` follows a deployment to `Ready` (a cluster pulls images and models)."""
_SAID_NO_CLUSTER_KEYS = threading.Event()


def deploy(
    model_or_uri: Any,
    name: str,
    *,
    target: Target = "local",
    namespace: str | None = None,
    context: str | None = None,
    storage_uri: str | None = None,
    model_store: str | None = None,
    version: str | int | None = None,
    min_replicas: int = 1,
    max_replicas: int = 1,
    batching: dict[str, Any] | None = None,
    container_concurrency: int | None = None,
    timeout_s: int | None = None,
    resources: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    auth: bool = True,
    sinks: list[Any] | None = None,
    input_example: Any = None,
    reference_data: Any = None,
    output_names: dict[str, str] | None = None,
    device: str | None = None,
    optimize: bool | str = False,
    sample: Any = None,
    tolerance: float = DEFAULT_TOLERANCE,
    backend: Backend | None = None,
) -> Deployment:
    """Serve a model under `name` and return its `Deployment` once it answers.

    `model_or_uri` is a fitted model (on the local server, served at once from a staged copy
    while it registers as a new version of `name`; see `Deployment.registration`), a registry
    URI (`models:/iris/3`, `models:/iris@champion`), a registered model's name with `version`,
    or a model file or folder. Deploying an existing name again creates a new revision that
    takes over when ready, without dropping a request. The way to `Ready` shows as it goes
    (accepted, scheduled, loaded, ready); a failed stage raises with its reason.

    `target="kserve"` deploys an InferenceService on the cluster of the kubeconfig `context`
    (default: the current one) in `namespace`. The cluster cannot read this machine's disk: a
    fitted model is registered first, then uploaded to `model_store` (`s3://BUCKET/prefix`,
    default `$NSTARX_MODEL_STORE`; any S3-compatible server, see the README) under
    `NAME/VERSION` and deployed from there; or deployed from `storage_uri` where you put it
    (`s3://`, `gs://`, `pvc://`, `oci://`), or from its registry artifact when that is remote.
    A registry version whose artifacts are on this machine is uploaded to the model store the
    same way (`STORE/NAME/VERSION`), and refused without one; a local file is refused before
    anything is applied.

    With `auth` (the default) callers need an API key. On the local server each call mints one
    for this deployment (scope `predict:NAME`) and keeps it on the returned object (`.api_key`,
    shown once; earlier keys stay valid until revoked). On KServe no key is minted: the cluster
    has no nstarx key store, its ingress checks callers (`auth` sets Open Data Hub's
    `enable-auth` annotation). `auth=False` opens the deployment's inference and metadata to
    anyone, as KServe does; the rest of the local server still needs a key.

    `input_example` (a record, records, or a DataFrame) and `reference_data` go to the registry
    with a fitted model (signature, drift statistics); the example also fills the card's form.
    On the local server a seeded sample of `reference_data` (with the fitted model's
    predictions on it) also becomes the deployment's drift reference (`Deployment.drift()`).

    `output_names` renames the product endpoint's answer fields (`prediction`, `confidence`,
    also called `probability`: the top class probability, `probabilities`), e.g.
    `{"prediction": "sentiment", "probability": "confidence"}`; it is part of the spec.

    `sinks` send every answered request elsewhere as well: `{"kind": "webhook", "url": ...}`
    (batched JSON POSTs, retried, then a dead-letter file; `"format": "cloudevents"` is KServe's
    logger) or `{"kind": "file", "format": "jsonl" | "parquet"}` (under the server's sink
    folder); see the README's "Sending results elsewhere".

    A fitted PyTorch module is exported to ONNX and a Keras model saved as `.keras`, each with
    the signature `input_example` (an array, tensor, or a tuple or dict of them) gives; see
    `nstarx_jupyter.deployment.frameworks`. `device` (`auto`, `cpu`, `gpu`, `cuda:N`,
    `tensorrt`) picks where the runtime computes (the default `auto`: a GPU when its framework
    sees one); a GPU device also asks KServe for `nvidia.com/gpu: 1` (see the README's "GPUs").

    `optimize=True` (or `"int8"`/`"fp16"`, quantised too) serves the model as optimised ONNX
    when at most `tolerance` (a share, default 1 %) of the rows of `sample` (else
    `reference_data`, else `input_example`) answer differently, else the original; the report
    and the reason show here and stay in `Deployment.optimization` (see the README).

    A file or registry URI named here is deployed as `trusted` (with the admin token: you vouch
    for it, as `nstarx deploy` does), so a pickle you name loads; a fitted scikit-learn model is
    staged with skops and needs no trust (see the README's "Trust model").
    """
    if backend is None:
        backend = backend_for(target, context=context, namespace=namespace)
    elif backend.target != target and target != "local":
        raise InvalidInputError(f"target '{target}': the backend given is '{backend.target}'")
    service = DeploymentService(backend)
    card_example = first_record(input_example, model_or_uri, reference_data)
    input_example = model_example(model_or_uri, input_example)
    applied = service.deploy(
        model_or_uri, name, version=version, storage_uri=storage_uri, namespace=namespace,
        input_example=input_example, output_names=output_names, reference_data=reference_data,
        model_store=model_store, min_replicas=min_replicas,
        max_replicas=max_replicas, batching=batching, container_concurrency=container_concurrency,
        timeout_s=timeout_s, resources=resources, options=options, auth=auth, sinks=sinks,
        device=device, optimize=optimize, sample=sample, tolerance=tolerance,
    )  # fmt: skip
    made = Deployment(name, backend)
    made.registration = applied.registration
    made._example = card_example
    made.optimization = show_optimization(name, applied.optimization)
    if backend.target == "local":  # drift: the server compares live traffic with these
        _drift_reference(made, model_or_uri, reference_data)
    service.wait_ready(name, timeout_s=READY_TIMEOUT_S, on_progress=ProgressLine(name))
    if auth and backend.target == "local":
        minted = made.service.local("keys").create_key(
            f"notebook deploy of {name}", [f"predict:{name}"], deployment=name
        )  # revoked when the deployment is deleted
        made.api_key = minted.key
    elif auth and not _SAID_NO_CLUSTER_KEYS.is_set():
        _SAID_NO_CLUSTER_KEYS.set()
        log.warning(
            "auth=True on target '%s': no nstarx API key is minted (the cluster has no nstarx "
            "key store); its ingress checks callers", backend.target,
        )  # fmt: skip
    return made


def _drift_reference(made: Deployment, model_or_uri: Any, reference_data: Any) -> None:
    """Send the drift reference: `reference_data`, else a registry version's sample if any."""
    if reference_data is not None:
        made.set_reference(reference_data, model=model_or_uri)
    elif isinstance(model_or_uri, str) and is_registry_uri(model_or_uri):
        try:
            made.set_reference(registry=model_or_uri)
        except Exception as exc:  # noqa: BLE001 - drift is a nicety here: the deployment serves
            log.info("no drift reference for %s: %s", made.name, exc)


class ProgressLine:
    """Shows a deployment's way to `Ready`: one updating line in IPython, log lines elsewhere."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._steps: list[str] = []
        self._handle: Any = None

    def __call__(self, step: Progress) -> None:
        """Add `step` to the line (or log it)."""
        self._steps.append(step.message if step.stage in ("failed", "ready") else step.stage)
        line = f"{self.name}: {' → '.join(self._steps)}"
        shell = _ipython()
        if shell is None:
            log.info("%s: %s", self.name, step.message)
            return
        from IPython.display import display

        bundle = {"text/plain": line}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(bundle, raw=True)


def _ipython() -> Any:
    """The running IPython shell, or None (a script, a test without one)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


class Deployment(RolloutMixin, UsageMixin, DriftMixin, ExplainMixin, BatchMixin, ExportMixin):
    """A running deployment: status, endpoint, predictions, rollouts, KServe YAML, deletion."""

    def __init__(self, name: str, backend: Backend | None = None) -> None:
        self.name = name
        self.service = DeploymentService(backend)
        self.backend = self.service.backend
        self._client: InferenceClient | None = None
        self._charts: list[LatencyChart] = []
        self._example: dict[str, Any] | None = None
        self.api_key: str | None = None
        """The key this object minted (`deploy()` or `create_key()`); the server keeps only its
        digest, so this is the one place it can be read."""
        self.registration: Future[ModelVersion] | None = None
        """For a fitted model: its registration in MLflow, running behind the deployment (the
        deployment moves to `models:/NAME/VERSION` when it completes)."""

    def describe(self) -> Description:
        """The backend's description: spec, revision, status (and why not Ready), traffic."""
        return self.service.describe(self.name)

    @property
    def status(self) -> str:
        """`Ready`, `Loading`, `Idle` (scaled to zero), `Failed` or `Unknown`."""
        return self.describe().status

    @property
    def revision(self) -> int:
        """Increases by one with each redeploy."""
        return self.describe().revision

    @property
    def spec(self) -> DeploymentSpec:
        """The spec the deployment runs."""
        return self.describe().spec

    @property
    def url(self) -> str:
        """The model's endpoint (`…/v1/models/NAME`): `/predict` for records, KServe V1 and V2."""
        return self.backend.endpoint(self.name).url

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> Description:
        """Follow the deployment to `Ready`, showing each stage (a failed one raises)."""
        return self.service.wait_ready(self.name, timeout_s=timeout_s,
                                       on_progress=ProgressLine(self.name))  # fmt: skip

    def predict(
        self, data: Any, *, version: str | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        """Send a record (or several) and return the named outputs.

        Calls as the owner (the local server's admin token, or the credentials the backend's
        endpoint names), so it works on a protected deployment without handing a key around.
        `version` asks one model version (a staged or canary revision, a variant) past the
        traffic policy; `headers` go along (a routing key such as `X-User-Id`, a region).
        """
        if self._client is None:
            self._client = self._owner_client()
        return self._client.predict(data, version=version, headers=headers)

    def _owner_client(self, retries: int = 2) -> InferenceClient:
        endpoint = self.backend.endpoint(self.name)
        return InferenceClient(endpoint.url, api_key=endpoint.token, retries=retries,
                               verify=endpoint.verify)  # fmt: skip

    def example(self) -> dict[str, Any] | None:
        """A record to try the endpoint with (from `deploy(input_example=...)`), or None."""
        return self._example

    def create_key(
        self,
        name: str = "",
        *,
        manage: bool = False,
        expires_in: float | str | None = None,
        rate_limit: float | None = None,
        burst: int | None = None,
    ) -> str:
        """Mint an API key for this deployment, keep it in `.api_key` and return it (once).

        The key may call the deployment (`predict`); with `manage` it may also change it.
        `expires_in` is seconds or `"30d"`; `rate_limit` requests per second (`burst` at once).
        """
        scopes = [f"predict:{self.name}", *([f"manage:{self.name}"] if manage else [])]
        made = create_key(name or f"key for {self.name}", scopes, expires_in=expires_in,
                          rate_limit=rate_limit, burst=burst,
                          backend=self.service.local("keys"))  # fmt: skip
        self.api_key = str(made["key"])
        return self.api_key

    def list_keys(self) -> list[dict[str, Any]]:
        """The keys that can call this deployment: id, prefix, name, scopes, state."""
        mine = (f"predict:{self.name}", f"manage:{self.name}", "predict:*", "manage:*", "admin")
        return [key.model_dump() for key in self.service.local("keys").list_keys()
                if any(scope in mine for scope in key.scopes)]  # fmt: skip

    def revoke_key(self, key: str) -> None:
        """Revoke a key by id, prefix or the key itself; it gets 401 from now on."""
        prefix = key_prefix(key)
        self.service.local("keys").revoke_key(prefix)
        if self.api_key is not None and key_prefix(self.api_key) == prefix:
            self.api_key = None

    def rotate_key(self, key: str | None = None, grace: float | str = 0) -> str:
        """Replace a key (default `.api_key`) by a new one and return it (shown once).

        The old key keeps working for `grace` (seconds or `"10m"`); `.api_key` becomes the new
        key when the old one was it.
        """
        old = key or self.api_key
        if old is None:
            raise InvalidInputError("rotate_key: name the key (this object holds none)")
        secret = str(rotate_key(old, grace, backend=self.service.local("keys"))["key"])
        if self.api_key is None or key_prefix(self.api_key) == key_prefix(old):
            self.api_key = secret
        return secret

    def audit(self, since: float | str | None = "1h", **filters: Any) -> pd.DataFrame:
        """This deployment's audit records as a DataFrame (see `nstarx_jupyter.audit_log`)."""
        return audit_log(since, model=self.name, backend=self.service.local("audit"), **filters)

    def metrics(self, window_s: float = 60) -> dict[str, Any]:
        """Server-side figures of the last `window_s` seconds.

        Requests, rps, errors, error rate and exact p50/p95/p99 latency in ms, over every
        caller's requests (not only this object's).
        """
        return self.backend.metrics(self.name, window_s).model_dump(mode="json")

    def logs(self) -> list[str]:
        """What happened to this deployment: each deploy, restore, failure (with its reason)."""
        return self.service.events(self.name)

    def events(self) -> list[str]:
        """The same as `logs()`: the backend's events for this deployment, oldest first."""
        return self.service.events(self.name)

    def latency_chart(self, window_s: float = 10.0, interval_s: float = 1.0) -> Any:
        """A plotly `FigureWidget` of p50/p95/p99, req/s and error rate, live.

        Redrawn every `interval_s` from the server's last `window_s` seconds (extra `notebook`).
        """
        chart = LatencyChart(self.metrics, title=self.name, window_s=window_s,
                             interval_s=interval_s).start()  # fmt: skip
        self._charts.append(chart)
        return chart.figure

    def load_test(self, data: Any, *, rps: float = 50, duration_s: float = 10) -> LoadTest:
        """Send `data` at `rps` for `duration_s` in the background; `.wait()` gives the report."""
        client = self._owner_client(retries=0)
        test = LoadTest(client.predict, data, rps=rps, duration_s=duration_s).start()

        def close_after() -> None:
            test.wait()
            client.close()

        threading.Thread(target=close_after, daemon=True).start()
        return test

    def to_kserve(
        self,
        *,
        storage_uri: str | None = None,
        image: str | None = None,
        variant_uris: dict[str, str] | None = None,
    ) -> str:
        """The KServe YAML for this deployment (see `DeploymentSpec.to_kserve`)."""
        return self.spec.to_kserve(storage_uri=storage_uri, image=image, variant_uris=variant_uris)

    def delete(self) -> None:
        """Stop serving and forget the deployment."""
        self.close()
        self.service.delete(self.name)
        if "nstarx_jupyter.notebook.card" in sys.modules:  # cards shown: they say "Deleted" now
            from nstarx_jupyter.notebook.card import refresh_cards

            refresh_cards(self.name)

    def close(self) -> None:
        """Stop its charts and close its pooled connections (the deployment keeps serving)."""
        for chart in self._charts:
            chart.stop()
        self._charts.clear()
        if self._client is not None:
            self._client.close()
            self._client = None

    def __del__(self) -> None:
        # Notebooks drop objects without closing them; their sockets should go with them.
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    def card(self) -> Any:
        """The widget card a cell shows for the deployment.

        Status, endpoint, cURL and Python snippets with the key, and a test prediction form.
        """
        from nstarx_jupyter.notebook.card import DeploymentCard

        return DeploymentCard(self)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Jupyter shows the card; without the widget front end (or a server), the text."""
        try:
            card = self.card()
        except (ImportError, OSError) as exc:  # no `notebook` extra or no bundle: say so
            log.debug("no card for %s: %s", self.name, exc)
            return {"text/plain": repr(self)}
        return card._repr_mimebundle_(**kwargs)  # ipywidgets: (data, metadata)

    def __repr__(self) -> str:
        return f"Deployment(name={self.name!r})"
