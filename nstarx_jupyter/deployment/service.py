"""`DeploymentService`: deploys and rollouts by deployment name, over any `Backend`.

The one place the deploy and rollout logic lives: the notebook's `Deployment`, the lab extension
and the CLI call it, with the local server or a KServe cluster behind it. Each rollout step is one
conditional change of the deployment's spec: it applies only while the revision it read is still
current (`if_revision`), so two clients steering one deployment cannot undo each other's change
without noticing (`ConflictError`).
"""

from __future__ import annotations

import importlib
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from nstarx_jupyter.deployment.artifacts import Source, resolve_source
from nstarx_jupyter.deployment.backend import (
    Backend,
    Description,
    Progress,
    Target,
    TrafficArm,
    TrafficView,
)
from nstarx_jupyter.deployment.dates import dated_frame
from nstarx_jupyter.deployment.export.optimize import (
    DEFAULT_TOLERANCE,
    OPTIMIZE_ANNOTATION,
    Optimization,
    optimize_model,
)
from nstarx_jupyter.deployment.frameworks import (
    example_options,
    is_keras_model,
    is_torch_module,
    servable,
)
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.deployment.rollouts import Rollouts
from nstarx_jupyter.deployment.sources import spec_for
from nstarx_jupyter.deployment.spec import PRIMARY
from nstarx_jupyter.deployment.staging import remove_staged, stage_model
from nstarx_jupyter.errors import (
    ConflictError,
    InvalidInputError,
    NstarxError,
    UnavailableError,
    UnsupportedError,
)
from nstarx_jupyter.registry import Registry
from nstarx_jupyter.runtimes.sklearn_inputs import frame_columns

if TYPE_CHECKING:
    from collections.abc import Callable

    from nstarx_jupyter.deployment.spec import DeploymentSpec
    from nstarx_jupyter.registry import ModelVersion

__all__ = ["TARGETS", "Applied", "DeploymentService", "backend_for"]

log = logging.getLogger(__name__)

SWITCH_ATTEMPTS = 5
"""Reads and conditional applies a registered version gets to replace its staged copy."""

TARGETS: tuple[Target, ...] = ("local", "kserve")
CONFLICT_RETRIES = 5
"""Reads and writes a change may take when the deployment keeps changing under it."""
LOCAL_ONLY = {
    "keys": "API keys live in nstarx's key store on this machine; on a cluster, use its "
            "ingress auth (e.g. the security.opendatahub.io/enable-auth annotation)",
    "variants": "per-variant figures come from nstarx's server; KServe reports no such split",
    "ab_report": "the A/B report reads nstarx's per-variant outcomes, which KServe does not keep",
    "drift": "nstarx's server samples the requests it serves; on KServe, log the requests "
             "(the InferenceService's `logger`) to a drift detector such as Alibi Detect",
    "explain": "nstarx's server explains the model it holds in its process; on KServe, deploy "
               "an explainer with the InferenceService (`spec.explainer`, e.g. Alibi or SHAP)",
}  # fmt: skip
"""What only the local server has, and why a cluster cannot give it."""


def backend_for(
    target: Target = "local", *, context: str | None = None, namespace: str | None = None
) -> Backend:
    """The backend for `target`: the local server, or a KServe cluster (kubeconfig `context`).

    Raises:
        InvalidInputError: an unknown target, or a context or namespace for the local server.
        UnsupportedError: this installation has no KServe backend.
    """
    if target == "local":
        if context is not None or namespace is not None:
            raise InvalidInputError("context and namespace: only for target 'kserve'")
        return LocalBackend()
    if target != "kserve":
        raise InvalidInputError(f"target '{target}': one of {', '.join(TARGETS)}")
    try:
        module = importlib.import_module("nstarx_jupyter.deployment.kserve_backend")
    except ModuleNotFoundError as exc:
        if exc.name != "nstarx_jupyter.deployment.kserve_backend":
            raise
        raise UnsupportedError(
            "target 'kserve': this installation has no KServe backend "
            "(nstarx_jupyter.deployment.kserve_backend is missing); deploy with target='local', "
            "or apply deployment.to_kserve(storage_uri=...) with kubectl"
        ) from None
    return cast("Backend", module.KServeBackend(context=context, namespace=namespace))


def _optimization(model: Any, name: str, optimize: bool | str, tolerance: float, example: Any,
                  samples: tuple[Any, ...]) -> tuple[Optimization, Any, Any]:  # fmt: skip
    """`optimize_model` on the first of `samples` given (a sample, reference data, the example).

    Returns what it found, the model to deploy (the ONNX graph, or the original) and the example
    to deploy it with. A fitted PyTorch module or Keras model is first saved as it would be
    served, with the signature `example` gives, and that file converts: a module's ONNX export
    (staged as a `.onnx` file for the comparison only: when the original serves, the export
    deploys as without `optimize`, staged and registered), a Keras model's folder (which serves
    when the original does: it holds the signature, so no example goes with it). A staged file
    goes once nothing serves it.
    """
    rows = next((found for found in samples if found is not None), None)
    quantize = optimize if isinstance(optimize, str) else None
    staged: Path | None = None
    if is_torch_module(model):
        model, example = servable(model, name, example)  # the ONNX export, as served
        staged = stage_model(model, name)[0]
    elif is_keras_model(model):
        model, example = servable(model, name, example)
        staged = model
    try:
        found = optimize_model(staged or model, rows, tolerance=tolerance, quantize=quantize,
                               options=example_options(model, example))  # fmt: skip
    except BaseException:
        if staged is not None:
            remove_staged(staged)
        raise
    if staged is not None and (found.served == "onnx" or staged is not model):
        remove_staged(staged)
    if found.served == "onnx":
        return found, found.model, None
    return replace(found, model=model), model, example


@dataclass(frozen=True, slots=True)
class Applied:
    """A deploy or canary as the backend accepted it, and the registration behind it."""

    description: Description
    registration: Future[ModelVersion] | None = None
    """A fitted model on the local server: its registration in MLflow, running behind the
    deployment (which moves to `models:/NAME/VERSION` when it completes). On a cluster the
    model was registered before it was applied: a completed future."""
    optimization: Optimization | None = None
    """With `optimize`: what was served (ONNX or the original), why, and the comparison."""


class DeploymentService(Rollouts):
    """Deploy, roll out, inspect and delete deployments by name on one backend."""

    def __init__(self, backend: Backend | None = None, *, wait_rollouts: bool = True) -> None:
        """A service over `backend` (the local server by default).

        `wait_rollouts=False`: a rollout step on a cluster returns once the API server took it,
        not once the controller reports it ready (the lab's sidebar shows the progress in its
        list instead of holding a request open for minutes).
        """
        self.backend: Backend = backend if backend is not None else LocalBackend()
        self.wait_rollouts = wait_rollouts

    @property
    def target(self) -> Target:
        """Where the deployments run: `local` or `kserve`."""
        return self.backend.target

    def local(self, feature: str) -> LocalBackend:
        """The local backend, for what only it has (`feature`); `UnsupportedError` elsewhere."""
        if isinstance(self.backend, LocalBackend):
            return self.backend
        why = LOCAL_ONLY.get(feature, "only nstarx's local server has it")
        raise UnsupportedError(f"{feature} on target '{self.target}': {why}")

    # -- deploy ----------------------------------------------------------------------------------

    def deploy(
        self,
        model_or_uri: Any,
        name: str,
        *,
        version: str | int | None = None,
        storage_uri: str | None = None,
        namespace: str | None = None,
        input_example: Any = None,
        reference_data: Any = None,
        model_store: str | None = None,
        optimize: bool | str = False,
        sample: Any = None,
        tolerance: float = DEFAULT_TOLERANCE,
        **spec: Any,
    ) -> Applied:
        """Serve a model (fitted, a file, a registry URI) under `name`; returns once accepted.

        `spec` takes `spec_for`'s fields (replicas, batching, auth, ...). A fitted model serves
        at once from a staged copy on the local server and registers behind it; for KServe it is
        registered first, uploaded to `model_store` (default `$NSTARX_MODEL_STORE`) and deployed
        from there (or from `storage_uri`, where you uploaded it, or from its registry artifact
        when that is remote), and refused before anything is applied when the cluster could not
        read it. A registry version whose artifacts are on this machine is uploaded the same way.
        Follow it to `Ready` with `wait_ready`.

        `optimize` (True, or `int8` / `fp16` to quantise too) serves the model converted to
        optimised ONNX when at most `tolerance` (a share) of the rows of `sample` (else
        `reference_data`, else `input_example`) answer differently, else the original; the
        reason is in the spec's `nstarx.io/optimize` annotation and the deployment's events.
        """
        optimization = None
        if optimize:
            optimization, model_or_uri, input_example = _optimization(
                model_or_uri, name, optimize, tolerance, input_example,
                (sample, reference_data, input_example))  # fmt: skip
            if optimization.served == "onnx":  # MLflow cannot infer an ONNX signature from rows
                reference_data = None
                spec["options"] = {**optimization.options, **(spec.get("options") or {})}
        if not isinstance(model_or_uri, str | Path):  # records of dates: a datetime64 frame
            input_example = dated_frame(input_example)
        times = frame_columns(input_example) or frame_columns(reference_data)
        if times and not isinstance(model_or_uri, str | Path):  # a fitted model keeps no dtypes
            spec["options"] = {"input_columns": times, **(spec.get("options") or {})}
        example = example_options(model_or_uri, input_example)
        if example:  # a TorchScript file: the example gives its signature at load
            spec["options"] = {**example, **(spec.get("options") or {})}
        model_or_uri, input_example = servable(model_or_uri, name, input_example)
        register = {"input_example": input_example, "reference_data": reference_data}
        source = self._source(model_or_uri, name, version, storage_uri, register, model_store)
        made = spec_for(source.uri, name, trusted=source.trusted, **spec)
        if namespace is not None:
            made = made.replace(namespace=namespace)
        if optimization is not None:
            made = made.replace(annotations={**made.annotations,
                                             OPTIMIZE_ANNOTATION: optimization.reason})  # fmt: skip
        applied = self.backend.apply(made)
        registration = self._registration(model_or_uri, source, applied, register)
        if optimization is not None:
            self._note(name, f"optimize: {optimization.reason}")
        return Applied(applied, registration, optimization)

    def wait_ready(
        self,
        name: str,
        *,
        timeout_s: float = 300.0,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> Description:
        """Follow the deployment to `Ready` through `backend.watch`, reporting each stage.

        Raises:
            UnavailableError: a stage failed (the message holds its reason and message), or
                `timeout_s` passed (the message names the stage it waited for).
        """
        for step in self.backend.watch(name, timeout_s=timeout_s):
            if on_progress is not None:
                on_progress(step)
            if step.stage == "failed":
                reason = (
                    f" ({step.reason})" if step.reason and step.reason not in step.message else ""
                )
                raise UnavailableError(f"'{name}' did not become ready: {step.message}{reason}")
        return self.backend.describe(name)

    def _source(
        self,
        model_or_uri: Any,
        name: str,
        version: str | int | None,
        storage_uri: str | None,
        register: dict[str, Any] | None = None,
        store: str | None = None,
    ) -> Source:
        return resolve_source(model_or_uri, name, self.target, version=version,
                              storage_uri=storage_uri, register=register, store=store)  # fmt: skip

    def _registration(
        self, model: Any, source: Source, applied: Description, register: dict[str, Any]
    ) -> Future[ModelVersion] | None:
        if not source.fitted:
            return None
        if source.registered is not None:
            done: Future[ModelVersion] = Future()
            done.set_result(source.registered)
            return done
        return self._register_behind(model, applied.spec, **register)

    # -- registration behind a staged model (the local server) -----------------------------------

    def _register_behind(
        self, model: Any, spec: DeploymentSpec, **register: Any
    ) -> Future[ModelVersion]:
        """Register in MLflow on a worker thread, then serve the registry version instead.

        MLflow's import and first store migration take seconds; the model serves meanwhile from
        its staged file. The switch happens only while the deployment still serves that staged
        file (a newer deploy or a deletion in the meantime wins, and the version stays
        registered), on the deployment as it is then: a canary's share or a traffic policy set
        since is kept. The staged file goes once nothing serves it. The thread is not a daemon:
        a script that ends right after `deploy()` still finishes registering.
        """
        done: Future[ModelVersion] = Future()
        staged = spec.storage_uri
        register = {key: value for key, value in register.items() if value is not None}

        backend = self.backend
        if isinstance(backend, LocalBackend):  # a stopped server stays stopped
            backend = backend.attached()

        def work() -> None:
            try:
                version = Registry().register(model, spec.name, **register)
                if self._switch(backend, spec.name, staged, version.uri) and staged is not None:
                    remove_staged(Path(staged))
                done.set_result(version)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                self._report_failure(backend, spec.name, staged, exc)
                done.set_exception(exc)
            finally:
                if backend is not self.backend and isinstance(backend, LocalBackend):
                    backend.close()

        threading.Thread(target=work, name=f"nstarx-register-{spec.name}").start()
        return done

    def _switch(self, backend: Backend, name: str, staged: str | None, uri: str) -> bool:
        """Serve `uri` where the deployment serves `staged`; False when it no longer does.

        A change to the deployment between reading it and applying (a key, a traffic share)
        is a conflict, not a newer model: read it again and switch if it still serves `staged`.
        """
        for _ in range(SWITCH_ATTEMPTS):
            try:
                described = backend.describe(name)
                if described.spec.storage_uri != staged:
                    log.info("%s: not switching to %s: it serves %s now", name, uri,
                             described.spec.storage_uri)  # fmt: skip
                    return False
                backend.apply(described.spec.replace(storage_uri=uri),
                              if_revision=described.revision)  # fmt: skip
            except ConflictError as exc:  # changed meanwhile: look again
                log.info("%s: switching to %s: %s; reading it again", name, uri, exc)
                continue
            except NstarxError as exc:  # deleted meanwhile, or the server refused it
                log.warning("%s: not switching to %s: %s", name, uri, exc)
                return False
            return True
        log.warning("%s: not switching to %s: it kept changing", name, uri)
        return False

    def _report_failure(
        self, backend: Backend, name: str, staged: str | None, exc: BaseException
    ) -> None:
        """Say that a registration failed where the user looks: the log, `events()`, the card."""
        reason = exc.message if isinstance(exc, NstarxError) else f"{type(exc).__name__}: {exc}"
        text = f"registration failed: {reason}; it keeps serving the staged copy {staged}"
        log.warning("%s: %s", name, text)
        try:
            backend.note(name, text)
        except NstarxError as noted:  # deleted meanwhile, or the server stopped: the log has it
            log.info("%s: could not note the failed registration: %s", name, noted)

    def _note(self, name: str, text: str) -> None:
        """`note`, for what is worth a line but not a failed deploy when it cannot be written."""
        try:
            self.backend.note(name, text)
        except NstarxError as exc:
            log.info("%s: could not note %r: %s", name, text, exc)

    # -- reading ---------------------------------------------------------------------------------

    def describe(self, name: str) -> Description:
        """One deployment now."""
        return self.backend.describe(name)

    def deployments(self) -> list[Description]:
        """Every deployment the backend holds."""
        return self.backend.deployments()

    def traffic(self, name: str) -> TrafficView:
        """The current split (variant, version, percent) and rules, shadow and fallback."""
        view = self.backend.traffic(name)
        if view is None:  # not serving yet: all of it will go to the deployment's own model
            revision = str(self.backend.describe(name).revision)
            return TrafficView(split=[TrafficArm(variant=PRIMARY, version=revision, percent=100.0)])
        return view

    def events(self, name: str) -> list[str]:
        """What happened to the deployment, oldest first."""
        return self.backend.events(name)

    def note(self, name: str, text: str) -> None:
        """Write a line into the deployment's events."""
        self.backend.note(name, text)

    def delete(self, name: str) -> None:
        """Stop serving and forget the deployment."""
        self.backend.delete(name)

    def staged_version(self, name: str) -> str:
        """The version of the revision staged (or in canary) next to the live one."""
        for arm in self.traffic(name).split:
            if arm.variant == "canary":
                return arm.version
        raise InvalidInputError(f"'{name}' has no staged revision")

    # -- conditional changes ---------------------------------------------------------------------

    def update(self, name: str, change: Callable[[Description], DeploymentSpec]) -> Description:
        """Apply `change` to the deployment as it is, retrying when it changed meanwhile.

        Returns once the change serves (on a cluster: once the new generation is ready, or
        once it was accepted when the service was made with `wait_rollouts=False`).

        Like a PATCH with Kubernetes' retry-on-conflict: a change made between our read and our
        write (a registration switching to the registry, another notebook) makes the write fail
        with a conflict; the change is then made again on top of the newer state, not over it.
        """
        for attempt in range(CONFLICT_RETRIES):
            described = self.backend.describe(name)
            try:
                applied = self.backend.apply(change(described), if_revision=described.revision)
            except ConflictError:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                continue
            # The local server answers once the change serves; a cluster has only accepted it:
            # a rollout is done when the controller reports the new generation ready.
            if isinstance(self.backend, LocalBackend) or not self.wait_rollouts:
                return applied
            return self.wait_ready(name)
        raise AssertionError("unreachable")  # pragma: no cover
