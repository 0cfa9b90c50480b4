"""`deploy()` and `Deployment`: a model behind an authenticated endpoint in one call.

The notebook's handle on a deployment: it takes fitted models (registering them behind the
deployment), mints the caller's API key, and shows itself as a card with a test form.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import atomic_write, nstarx_home
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.sources import spec_for, storage_uri_of
from nstarx_jupyter.deployment.spec import DeploymentSpec
from nstarx_jupyter.errors import InvalidInputError, NstarxError
from nstarx_jupyter.notebook.rollout import RolloutMixin
from nstarx_jupyter.notebook.usage import UsageMixin

if TYPE_CHECKING:
    import pandas as pd

    from nstarx_jupyter.client import InferenceClient
    from nstarx_jupyter.monitoring.live import LatencyChart, LoadTest
    from nstarx_jupyter.registry import ModelVersion

log = logging.getLogger(__name__)

__all__ = ["Deployment", "deploy"]


def deploy(
    model_or_uri: Any,
    name: str,
    *,
    target: str = "local",
    version: str | int | None = None,
    min_replicas: int = 1,
    max_replicas: int = 1,
    batching: dict[str, Any] | None = None,
    container_concurrency: int | None = None,
    timeout_s: int | None = None,
    resources: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    auth: bool = True,
    input_example: Any = None,
    reference_data: Any = None,
    backend: LocalBackend | None = None,
) -> Deployment:
    """Serve a model under `name` and return its `Deployment` once it answers.

    `model_or_uri` is a fitted model (served at once from a staged copy while it registers as
    a new version of `name`; see `Deployment.registration`), a registry URI (`models:/iris/3`,
    `models:/iris@champion`), a registered model's name with `version`, or a model file or
    folder. Deploying an existing name again creates a new revision that takes over when
    ready, without dropping a request.

    With `auth` (the default) callers need an API key: each call mints one for this deployment
    (scope `predict:NAME`) and keeps it on the returned object (`.api_key`, shown once; earlier
    keys stay valid until revoked). `auth=False` opens the deployment's inference and metadata
    to anyone, as KServe does; the rest of the server still needs a key.

    `input_example` (a record, records, or a DataFrame) and `reference_data` go to the registry
    with a fitted model (signature, drift statistics); the example also fills the card's form.

    A file or registry URI named here is deployed as `trusted` (with the admin token: you vouch
    for it, as `nstarx deploy` does), so a pickle you name loads; a fitted scikit-learn model is
    staged with skops and needs no trust (see the README's "Trust model").
    """
    if target != "local":
        raise InvalidInputError(
            f"target '{target}': only 'local' deploys yet; for KServe, apply "
            "deployment.to_kserve(storage_uri=...) with kubectl"
        )
    if isinstance(model_or_uri, str | Path):
        uri, trusted = storage_uri_of(model_or_uri, version), True  # the owner named it
    else:
        staged, trusted = _stage(model_or_uri, name)
        uri = str(staged)
    spec = spec_for(
        uri, name, min_replicas=min_replicas, max_replicas=max_replicas, batching=batching,
        container_concurrency=container_concurrency, timeout_s=timeout_s, resources=resources,
        options=options, auth=auth, trusted=trusted,
    )  # fmt: skip
    backend = backend or LocalBackend()
    applied = backend.apply(spec)
    made = Deployment(name, backend)
    made._example = _first_record(input_example, getattr(model_or_uri, "feature_names_in_", None))
    if auth:
        made.create_key(f"deploy() of {name}")
    if not isinstance(model_or_uri, str | Path):
        made.registration = _register_behind(
            model_or_uri, spec, int(applied["revision"]), backend,
            input_example=input_example, reference_data=reference_data,
        )  # fmt: skip
    return made


def _first_record(example: Any, names: Any) -> dict[str, Any] | None:
    """One record for the card's test form: from the example, else the model's feature names."""
    if example is None:
        return None if names is None else dict.fromkeys((str(n) for n in names), 0.0)
    if hasattr(example, "iloc"):  # a pandas DataFrame or Series
        first = example.iloc[0] if hasattr(example, "columns") else example
        return {str(k): v.item() if hasattr(v, "item") else v for k, v in first.items()}
    if isinstance(example, list) and example and isinstance(example[0], dict):
        return dict(example[0])
    if isinstance(example, dict):
        return dict(example)
    return None


def _stage(model: Any, name: str) -> tuple[Path, bool]:
    """Save a fitted model where the server can read it: serving starts before MLflow is done.

    Returns the file or folder and whether it must be served as `trusted`. A scikit-learn model
    is staged with skops in a folder whose `model-settings.json` lists the types skops does not
    know (the object comes from this process, as `Registry.register` vouches for it), so it
    loads without running code; ONNX is data. Only what skops cannot save (and XGBoost or
    LightGBM estimators, which the registry pickles too) is staged with joblib, as trusted: the
    caller's own object, in the owner's home, sent with the admin token.
    """
    from nstarx_jupyter.registry.flavors import flavor_of

    flavor = flavor_of(model)  # refuses what the registry could not take either
    folder = nstarx_home() / "staging" / name
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    if flavor.name == "onnx":
        return atomic_write(folder / f"{stem}.onnx", model.SerializeToString()), False
    if flavor.name == "sklearn":
        staged = _stage_skops(model, folder / stem)
        if staged is not None:
            return staged, False
    import io

    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return atomic_write(folder / f"{stem}.joblib", buffer.getvalue()), True


def _stage_skops(model: Any, target: Path) -> Path | None:
    """`target/model.skops` and the types it holds in `model-settings.json`; None if skops can't."""
    import json

    import skops.io

    try:
        data = skops.io.dumps(model)
        types = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - skops raises what the object's own state raises
        log.info("skops cannot save %s (%s): staging it with joblib", type(model).__name__, exc)
        return None
    target.mkdir(parents=True, exist_ok=True)
    atomic_write(target / "model.skops", data)
    settings = {"options": {"trusted_types": types}} if types else {}
    atomic_write(target / "model-settings.json", json.dumps(settings))
    return target


def _register_behind(
    model: Any, spec: DeploymentSpec, revision: int, backend: LocalBackend, **register: Any
) -> Future[ModelVersion]:
    """Register in MLflow on a worker thread, then serve the registry version instead.

    MLflow's import and first store migration take seconds; the model serves meanwhile from its
    staged file. The switch happens only while the deployment still serves that staged file (a
    newer deploy or a deletion in the meantime wins, and the version stays registered), on the
    deployment as it is then: a canary's share or a traffic policy set since is kept. The staged
    file goes once nothing serves it. The thread is not a daemon: a script that ends right after
    `deploy()` still finishes registering.
    """
    from nstarx_jupyter.registry import Registry

    done: Future[ModelVersion] = Future()
    staged = spec.storage_uri

    def work() -> None:
        try:
            version = Registry().register(model, spec.name, **register)
            if _switch(backend, spec.name, staged, version.uri) and staged is not None:
                _remove(Path(staged))
            done.set_result(version)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
            _report_failure(backend, spec.name, staged, exc)
            done.set_exception(exc)

    threading.Thread(target=work, name=f"nstarx-register-{spec.name}").start()
    return done


def _remove(staged: Path) -> None:
    """Delete a staged file or folder."""
    if staged.is_dir():
        import shutil

        shutil.rmtree(staged, ignore_errors=True)
    else:
        staged.unlink(missing_ok=True)


def _report_failure(
    backend: LocalBackend, name: str, staged: str | None, exc: BaseException
) -> None:
    """Say that a registration failed where the user looks: the log, `logs()`, the card."""
    reason = exc.message if isinstance(exc, NstarxError) else f"{type(exc).__name__}: {exc}"
    text = f"registration failed: {reason}; it keeps serving the staged copy {staged}"
    log.warning("%s: %s", name, text)
    if backend.running() is None:  # stopped meanwhile: not worth starting one for a note
        return
    try:
        backend.note(name, text)
    except NstarxError as noted:  # deleted meanwhile, or the server stopped: the log has it
        log.info("%s: could not note the failed registration: %s", name, noted)


def _switch(backend: LocalBackend, name: str, staged: str | None, uri: str) -> bool:
    """Serve `uri` where the deployment serves `staged`; False when it no longer does."""
    try:
        described = backend.describe(name)
        current = DeploymentSpec.build(**described["spec"])
        if current.storage_uri != staged:
            log.info("%s: not switching to %s: it serves %s now", name, uri, current.storage_uri)
            return False
        backend.apply(current.replace(storage_uri=uri), if_revision=int(described["revision"]))
    except NstarxError as exc:  # redeployed or deleted meanwhile: theirs is newer
        log.info("%s: not switching to %s: %s", name, uri, exc)
        return False
    return True


class Deployment(RolloutMixin, UsageMixin):
    """A running deployment: status, endpoint, predictions, rollouts, KServe YAML, deletion."""

    def __init__(self, name: str, backend: LocalBackend | None = None) -> None:
        self.name = name
        self.backend = backend or LocalBackend()
        self._client: InferenceClient | None = None
        self._charts: list[LatencyChart] = []
        self._example: dict[str, Any] | None = None
        self.api_key: str | None = None
        """The key this object minted (`deploy()` or `create_key()`); the server keeps only its
        digest, so this is the one place it can be read."""
        self.registration: Future[ModelVersion] | None = None
        """For a fitted model: its registration in MLflow, running behind the deployment (the
        deployment moves to `models:/NAME/VERSION` when it completes)."""

    def describe(self) -> dict[str, Any]:
        """The server's description: spec, revision, status and times."""
        return self.backend.describe(self.name)

    @property
    def status(self) -> str:
        """`Ready`, `Loading`, `Idle` (scaled to zero) or `Failed`."""
        return str(self.describe()["status"])

    @property
    def revision(self) -> int:
        """Increases by one with each redeploy."""
        return int(self.describe()["revision"])

    @property
    def spec(self) -> DeploymentSpec:
        """The spec the deployment runs."""
        return DeploymentSpec.build(**self.describe()["spec"])

    @property
    def url(self) -> str:
        """The model's endpoint (`…/v1/models/NAME`): `/predict` for records, KServe V1 and V2."""
        return f"{self.backend.ensure_server().url}/v1/models/{self.name}"

    def predict(
        self, data: Any, *, version: str | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        """Send a record (or several) and return the named outputs.

        Calls as the server's owner (the admin token in `$NSTARX_HOME`), so it works on a
        protected deployment without handing a key around. `version` asks one model version
        (a staged or canary revision, a variant) past the traffic policy; `headers` go along
        (a routing key such as `X-User-Id`, a region).
        """
        if self._client is None:
            self._client = self._owner_client()
        return self._client.predict(data, version=version, headers=headers)

    def _owner_client(self, retries: int = 2) -> InferenceClient:
        from nstarx_jupyter.client import InferenceClient

        state = self.backend.ensure_server()
        return InferenceClient(f"{state.url}/v1/models/{self.name}", api_key=state.token,
                               retries=retries)  # fmt: skip

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
        from nstarx_jupyter.notebook.security import create_key

        scopes = [f"predict:{self.name}", *([f"manage:{self.name}"] if manage else [])]
        made = create_key(name or f"key for {self.name}", scopes, expires_in=expires_in,
                          rate_limit=rate_limit, burst=burst, backend=self.backend)  # fmt: skip
        self.api_key = str(made["key"])
        return self.api_key

    def list_keys(self) -> list[dict[str, Any]]:
        """The keys that can call this deployment: id, prefix, name, scopes, state."""
        mine = (f"predict:{self.name}", f"manage:{self.name}", "predict:*", "manage:*", "admin")
        return [key for key in self.backend.list_keys()
                if any(scope in mine for scope in key["scopes"])]  # fmt: skip

    def revoke_key(self, key: str) -> None:
        """Revoke a key by id, prefix or the key itself; it gets 401 from now on."""
        from nstarx_jupyter.security import key_prefix

        prefix = key_prefix(key)
        self.backend.revoke_key(prefix)
        if self.api_key is not None and key_prefix(self.api_key) == prefix:
            self.api_key = None

    def rotate_key(self, key: str | None = None, grace: float | str = 0) -> str:
        """Replace a key (default `.api_key`) by a new one and return it (shown once).

        The old key keeps working for `grace` (seconds or `"10m"`); `.api_key` becomes the new
        key when the old one was it.
        """
        from nstarx_jupyter.notebook.security import rotate_key
        from nstarx_jupyter.security import key_prefix

        old = key or self.api_key
        if old is None:
            raise InvalidInputError("rotate_key: name the key (this object holds none)")
        secret = str(rotate_key(old, grace, backend=self.backend)["key"])
        if self.api_key is None or key_prefix(self.api_key) == key_prefix(old):
            self.api_key = secret
        return secret

    def audit(self, since: float | str | None = "1h", **filters: Any) -> pd.DataFrame:
        """This deployment's audit records as a DataFrame (see `nstarx_jupyter.audit_log`)."""
        from nstarx_jupyter.notebook.security import audit_log

        return audit_log(since, model=self.name, backend=self.backend, **filters)

    def metrics(self, window_s: float = 60) -> dict[str, Any]:
        """Server-side figures of the last `window_s` seconds.

        Requests, rps, errors, error rate and exact p50/p95/p99 latency in ms, over every
        caller's requests (not only this object's).
        """
        return self.backend.metrics(self.name, window_s)

    def logs(self) -> list[str]:
        """What happened to this deployment: each deploy, restore, failure (with its reason)."""
        return self.backend.logs(self.name)

    def latency_chart(self, window_s: float = 10.0, interval_s: float = 1.0) -> Any:
        """A plotly `FigureWidget` of p50/p95/p99, req/s and error rate, live.

        Redrawn every `interval_s` from the server's last `window_s` seconds (extra `notebook`).
        """
        from nstarx_jupyter.monitoring.live import LatencyChart

        chart = LatencyChart(self.metrics, title=self.name, window_s=window_s,
                             interval_s=interval_s).start()  # fmt: skip
        self._charts.append(chart)
        return chart.figure

    def load_test(self, data: Any, *, rps: float = 50, duration_s: float = 10) -> LoadTest:
        """Send `data` at `rps` for `duration_s` in the background; `.wait()` gives the report."""
        from nstarx_jupyter.monitoring.live import LoadTest

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
        self.backend.delete(self.name)

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
