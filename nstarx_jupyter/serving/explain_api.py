"""The control API's explanation routes: SHAP values of a deployment's model, per row and live.

`POST /deployments/{name}/explain` explains up to `MAX_ROWS` rows with the explainer that fits
the served model (`monitoring.explain`: tree, linear or kernel); `GET
/deployments/{name}/importance?window=1h` is each feature's mean |SHAP value| over up to
`IMPORTANCE_ROWS` live rows of the window, drawn from drift detection's per-minute reservoirs
(`serving.drift`), so feature impact is tracked over time, not per request.

The background the linear and kernel explainers need is the drift reference's sample (what the
notebook sends with `deploy(..., reference_data=X)`), else the live rows kept. Explainers are
built once per loaded model version and reference, on one thread of their own
(`nstarx-explain`): explaining never runs on the event loop, never takes a predict thread, and
one explanation runs at a time, each within `DEADLINE_S` (504 after it). A model running in an
isolated worker process is refused (400): its object is in another process, out of reach.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from starlette.routing import Route

from nstarx_jupyter.errors import (
    DeadlineExceededError,
    InvalidInputError,
    UnavailableError,
    UnsupportedError,
)
from nstarx_jupyter.monitoring.explain import ModelExplainer, mean_abs
from nstarx_jupyter.protocol.control import ExplainView, ImportanceView
from nstarx_jupyter.protocol.datatypes import numpy_dtype
from nstarx_jupyter.serving.background import LoopTask
from nstarx_jupyter.serving.control_http import PREFIX, control_endpoint, json_body, json_response
from nstarx_jupyter.serving.drift import DEFAULT_WINDOW_S, KEEP_S
from nstarx_jupyter.serving.drift_api import window_seconds
from nstarx_jupyter.serving.repository import ModelState
from nstarx_jupyter.serving.worker import WorkerRuntime

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector
    from starlette.requests import Request
    from starlette.responses import Response

    from nstarx_jupyter.runtimes.base import Runtime
    from nstarx_jupyter.security import Principal
    from nstarx_jupyter.serving.dataplane import DataPlane
    from nstarx_jupyter.serving.drift import DriftHub
    from nstarx_jupyter.serving.repository import LoadedModel

__all__ = ["DEADLINE_S", "IMPORTANCE_ROWS", "MAX_ROWS", "REFRESH_S", "ExplainApi"]

log = logging.getLogger(__name__)

MAX_ROWS = 100
"""Rows one explain call may send."""
IMPORTANCE_ROWS = 200
"""Live rows a window's importance explains (a seeded sample of the window's rows)."""
KERNEL_IMPORTANCE_ROWS = 50
"""The same for the kernel explainer, whose rows cost thousands of predictions each."""
DEADLINE_S = 30.0
"""An explanation (building the explainer included) answers 504 past this."""
REFRESH_S = 60.0
"""How often the one-hour importance of the deployments asked for it is recomputed (the gauge)."""
MODEL_OBJECTS = {"sklearn": "model", "xgboost": "booster", "lightgbm": "booster"}
"""Runtimes whose model object the tree and linear explainers can read, and where it is."""


class _Fitted:
    """A deployment's explainer with what it was built for (`key`: its reference's time)."""

    def __init__(self, name: str, key: float | None, explainer: ModelExplainer,
                 features: list[str], version: str) -> None:  # fmt: skip
        self.name, self.key, self.explainer = name, key, explainer
        self.features, self.version = features, version


class ExplainApi:
    """The explanation routes of one server, over its model repository and `DriftHub`."""

    def __init__(self, dataplane: DataPlane, hub: DriftHub, known: Callable[[str], object]) -> None:
        self.dataplane = dataplane
        self.hub = hub
        self._known = known
        self._executor = ThreadPoolExecutor(1, "nstarx-explain")
        self._slot = asyncio.Semaphore(1)
        self._fitted: weakref.WeakKeyDictionary[Runtime, _Fitted] = weakref.WeakKeyDictionary()
        """Explainers by the loaded runtime they explain: one unloaded (scale to zero, a new
        revision) takes its explainer with it, and the memory the explainer holds."""
        self._importance: dict[tuple[str, float], tuple[tuple[int, Any], int, Any]] = {}
        """Per deployment and window: the minute and explainer it was computed with, the live
        rows' revision then, the body. Reused within the minute; an answer without rows only
        while no row came."""
        self.latest: dict[str, dict[str, Any]] = {}
        """Each deployment's last default-window importance (the Prometheus gauge reads it)."""
        self._background = LoopTask(self._run_refresh)

    def routes(self) -> list[Route]:
        """`/deployments/{name}/explain` and `/deployments/{name}/importance`."""
        base = f"{PREFIX}/deployments/{{name}}"
        return [
            Route(f"{base}/explain", control_endpoint(self.dataplane, self._explain, "manage",
                                                      "explain"), methods=["POST"]),
            Route(f"{base}/importance", control_endpoint(self.dataplane, self._importance_route,
                                                         "manage", "importance"), methods=["GET"]),
        ]  # fmt: skip

    def forget(self, name: str) -> None:
        """A deleted deployment: drop its explainer and importance."""
        for runtime in [r for r, fitted in list(self._fitted.items()) if fitted.name == name]:
            self._fitted.pop(runtime, None)
        self.latest.pop(name, None)
        for key in [k for k in self._importance if k[0] == name]:
            del self._importance[key]

    def start(self) -> None:
        """Refresh, once a minute, the one-hour importance of each deployment asked for it."""
        self._background.start()

    async def close(self) -> None:
        """Stop refreshing; let the explanation thread go (a running one finishes on its own)."""
        await self._background.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run_refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            await self.refresh()

    async def refresh(self) -> None:
        """Recompute the one-hour importance of the deployments the gauge shows.

        Only of those asked once (`latest`) and loaded now: the gauge follows the traffic
        without anyone polling, and no model is loaded (or explainer built) for it.
        """
        for name in list(self.latest):
            try:
                entry = self.dataplane.repository.entry(name)
                loaded = entry.loaded
                if entry.state is not ModelState.READY or loaded is None:
                    continue
                # not `repository.use`: that counts as a use, and would keep an idle model from
                # scaling to zero; one unloaded meanwhile fails this round (503), no more
                await self._run(self.importance, name, loaded, DEFAULT_WINDOW_S)
            except Exception:  # a task boundary: one deployment's failure must not stop the rest
                log.warning("feature importance of %s failed", name, exc_info=True)

    # -- routes --------------------------------------------------------------------------------

    async def _explain(self, request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        self._known(name)
        doc = await json_body(request)
        unknown = set(doc) - {"rows", "class"}
        if unknown:
            raise InvalidInputError(f"unknown field(s): {', '.join(sorted(unknown))}")
        rows = doc.get("rows")
        if not isinstance(rows, list) or not rows:
            raise InvalidInputError("rows: a non-empty list of rows")
        if len(rows) > MAX_ROWS:
            raise InvalidInputError(f"rows: at most {MAX_ROWS} rows a call ({len(rows)} sent)")
        label = doc.get("class")
        if label is not None and not isinstance(label, str | int):
            raise InvalidInputError("class: a class label")
        async with self.dataplane.repository.use(name) as loaded:
            body = await self._run(self.explain_rows, name, loaded, rows,
                                   None if label is None else str(label))  # fmt: skip
        return json_response(ExplainView.model_validate(body).model_dump(mode="json"))

    async def _importance_route(self, request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        window_s = window_seconds(request.query_params.get("window"))
        self._known(name)
        async with self.dataplane.repository.use(name) as loaded:
            body = await self._run(self.importance, name, loaded, window_s)
        return json_response(ImportanceView.model_validate(body).model_dump(mode="json"))

    async def _run(self, work: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        """`work(*args)` on the explanation thread, one at a time, within `DEADLINE_S`."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            async with asyncio.timeout(DEADLINE_S):
                async with self._slot:
                    return await loop.run_in_executor(self._executor, work, *args)
        except TimeoutError:
            waited = time.monotonic() - started
            raise DeadlineExceededError(
                f"the explanation took more than {DEADLINE_S:g} s ({waited:.0f} s): explain "
                "fewer rows"
            ) from None

    async def explain_for_pipeline(
        self, name: str, rows: list[Any], label: str | None
    ) -> dict[str, Any]:
        """The explain answer for a pipeline's `explain_shap` step (the route's computation).

        The pipeline's caller was checked against the pipeline; the step may explain any
        deployment of this server, as its model nodes may call any.
        """
        self._known(name)
        if len(rows) > MAX_ROWS:
            raise InvalidInputError(f"at most {MAX_ROWS} rows an explanation ({len(rows)} sent)")
        async with self.dataplane.repository.use(name) as loaded:
            return await self._run(self.explain_rows, name, loaded, rows, label)

    # -- the work (on the explanation thread) --------------------------------------------------

    def explain_rows(
        self, name: str, loaded: LoadedModel, rows: list[Any], label: str | None
    ) -> dict[str, Any]:
        """The explain answer for `rows` (lists in feature order, or objects by feature)."""
        fitted = self._explainer(name, loaded)
        matrix = _matrix(rows, fitted.features)
        explanation = fitted.explainer.explain(matrix)
        picked = explanation.picked(label)
        answered = []
        for row, k in enumerate(picked):
            shap = explanation.values[row, :, k]
            base = float(explanation.base[k])
            answered.append({"output": explanation.outputs[k], "base": base,
                             "value": base + float(shap.sum()), "shap": shap.tolist()})  # fmt: skip
        return {"name": name, "version": fitted.version, "explainer": explanation.explainer,
                "space": explanation.space, "features": fitted.features,
                "outputs": explanation.outputs, "rows": answered,
                "seconds": explanation.seconds}  # fmt: skip

    def importance(self, name: str, loaded: LoadedModel, window_s: float) -> dict[str, Any]:
        """Mean |SHAP| per feature over the window's sampled live rows (cached per minute).

        Within a minute the rows move little (at most 120 of a window's thousands), so the
        answer is reused; the sidebar and a chart can poll it without recomputing.
        """
        fitted = self._explainer(name, loaded)
        now = self.hub.clock()
        minute = int(now // 60)
        monitor = self.hub.monitor(name)
        monitor.drain()
        cached = self._importance.get((name, window_s))
        if (cached is not None and cached[0] == (minute, fitted.key)
                and (cached[2]["rows"] or cached[1] == monitor.revision)):  # fmt: skip
            return cached[2]  # type: ignore[no-any-return]
        revision = monitor.revision
        columns = monitor.live_columns(window_s)
        matrix = _numeric(columns, fitted.features)
        limit = KERNEL_IMPORTANCE_ROWS if fitted.explainer.kind == "kernel" else IMPORTANCE_ROWS
        if matrix is not None and len(matrix) > limit:
            picked = np.sort(np.random.default_rng(minute).choice(len(matrix), limit, False))
            matrix = matrix[picked]
        body: dict[str, Any] = {"name": name, "window_s": window_s, "computed_at": now,
                                "rows": 0, "status": "no traffic", "explainer": None,
                                "space": None, "features": []}  # fmt: skip
        if matrix is not None and len(matrix):
            explanation = fitted.explainer.explain(matrix)
            scores = mean_abs(explanation)
            order = np.argsort(-scores, kind="stable")
            body.update(rows=len(matrix), status="ok", explainer=explanation.explainer,
                        space=explanation.space, features=[
                            {"feature": fitted.features[i], "importance": float(scores[i]),
                             "rank": rank + 1} for rank, i in enumerate(order)])  # fmt: skip
        self._importance[(name, window_s)] = ((minute, fitted.key), revision, body)
        if window_s == DEFAULT_WINDOW_S:
            self.latest[name] = body
        return body

    def _explainer(self, name: str, loaded: LoadedModel) -> _Fitted:
        """The deployment's explainer, built for this loaded model and reference if need be."""
        runtime = loaded.runtime
        reference = self.hub.monitor(name).reference
        key = None if reference is None else reference.created
        fitted = self._fitted.get(runtime)
        if fitted is not None and fitted.key == key:
            return fitted
        if isinstance(runtime, WorkerRuntime):
            raise UnsupportedError(
                f"'{name}' runs in an isolated worker process (isolation: process): its model "
                "object is in another process, which explanations do not reach; serve it in "
                "the server's process (isolation: thread) to explain it"
            )  # fmt: skip
        signature = loaded.signature
        if len(signature.inputs) != 1 or len(signature.inputs[0].shape) != 2:
            raise UnsupportedError(f"'{name}' does not take one table of features (one 2-D "
                                   "input): only tabular models are explained")  # fmt: skip
        spec = signature.inputs[0]
        if not spec.datatype.startswith(("FP", "INT", "UINT")):
            raise UnsupportedError(f"'{name}' takes {spec.datatype} features: only numeric "
                                   "features are explained")  # fmt: skip
        count = spec.shape[1]
        names = list(signature.feature_names or ())
        if count <= 0:
            count = len(names) or (len(reference.columns) if reference is not None else 0)
        if count <= 0:
            raise UnsupportedError(f"'{name}': its number of features is unknown")
        if len(names) != count:
            names = (list(reference.columns) if reference is not None
                     and len(reference.columns) == count else
                     [f"feature_{i}" for i in range(count)])  # fmt: skip
        background = _numeric(reference.columns if reference is not None
                              else self.hub.monitor(name).live_columns(KEEP_S), names)  # fmt: skip
        classes = ([str(c) for c in signature.class_labels]
                   if signature.class_labels is not None else None)  # fmt: skip
        probabilities = classes is not None and "predict_proba" in signature.output_names()
        predict = _predictor(runtime, spec.name, spec.datatype, signature.output_names(),
                             signature.default_outputs, probabilities)  # fmt: skip
        attribute = MODEL_OBJECTS.get(runtime.runtime_name)
        model = getattr(runtime, attribute, None) if attribute is not None else None
        explainer = ModelExplainer.build(model, predict, features=count, background=background,
                                         classes=classes, probabilities=probabilities)  # fmt: skip
        fitted = _Fitted(name, key, explainer, names, loaded.settings.version)
        self._fitted[runtime] = fitted
        return fitted

    def collector(self) -> Collector:
        """A Prometheus collector of `nstarx_feature_importance{deployment, feature}`."""
        return _ImportanceCollector(self)


def _predictor(
    runtime: Runtime,
    input_name: str,
    datatype: str,
    outputs: tuple[str, ...],
    defaults: tuple[str, ...],
    probabilities: bool,
) -> Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    """Rows -> the model's numeric output, through its runtime (what the kernel explainer calls).

    The runtime is held weakly: the explainer must not keep an unloaded model alive.
    """
    model = weakref.ref(runtime)
    output = "predict_proba" if probabilities else (defaults or outputs)[0]
    dtype = numpy_dtype(datatype) if datatype in ("FP64", "FP32", "FP16") else np.float64

    def predict(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        held = model()
        if held is None:
            raise UnavailableError("the model was unloaded; explain again", 1)
        answer = held.predict({input_name: np.asarray(x, dtype=dtype)}, (output,))[output]
        try:
            return np.asarray(answer, dtype=float)
        except (TypeError, ValueError):
            raise UnsupportedError(f"the model's output '{output}' is not numeric: it cannot "
                                   "be explained") from None  # fmt: skip

    return predict


def _matrix(rows: list[Any], features: list[str]) -> np.ndarray[Any, Any]:
    """The request's rows as a float matrix in feature order; 400 for a malformed row."""
    out = np.empty((len(rows), len(features)))
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            missing = [f for f in features if f not in row]
            if missing:
                raise InvalidInputError(f"rows[{i}]: no value for {', '.join(missing[:5])}")
            row = [row[f] for f in features]
        if not isinstance(row, list) or len(row) != len(features):
            raise InvalidInputError(f"rows[{i}]: {len(features)} numbers, in the order "
                                    f"{', '.join(features[:8])}")  # fmt: skip
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInputError(f"rows[{i}][{j}]: a number")
            if not math.isfinite(value):
                raise InvalidInputError(f"rows[{i}][{j}]: a finite number")
            out[i, j] = value
    return out


def _numeric(columns: dict[str, Any], features: list[str]) -> np.ndarray[Any, Any] | None:
    """Columns (by name, or `feature_I` by position) as a float matrix of complete rows.

    None when a feature has no column or is not numeric (no background from them).
    """
    picked = []
    for i, feature in enumerate(features):
        values = columns.get(feature)
        if values is None:
            values = columns.get(f"feature_{i}")
        if values is None:
            return None
        try:
            picked.append(np.asarray([np.nan if v is None else v for v in values], dtype=float))
        except (TypeError, ValueError):
            return None
    if not picked or len({len(v) for v in picked}) != 1:
        return None
    matrix = np.column_stack(picked)
    return matrix[np.isfinite(matrix).all(axis=1)]  # type: ignore[no-any-return]


class _ImportanceCollector:
    """Serves the last default-window importances (never computes on a scrape)."""

    def __init__(self, api: ExplainApi) -> None:
        self.api = api

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "nstarx_feature_importance",
            "Mean |SHAP value| per feature over the last hour's sampled live rows (as last "
            "computed by GET .../importance).",
            labels=["deployment", "feature"],
        )
        for name, body in list(self.api.latest.items()):
            for row in body["features"]:
                gauge.add_metric([name, row["feature"]], row["importance"])
        yield gauge
