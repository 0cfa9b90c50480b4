"""Drift of a deployment from a notebook cell: the server's tests, as a DataFrame and a chart.

Every number is the local server's (`GET /nstarx/v1/deployments/NAME/drift`): the notebook
reshapes the answer and computes none of it, so the sidebar's badge, the card and the notebook
agree. The reference is sent from here (`deploy(..., reference_data=X)` or `set_reference`): a
seeded sample of up to 1,000 rows of X (`registry.stats.sample_rows`) and, when the model can
predict them, its predictions on those rows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.monitoring.live import DriftChart
from nstarx_jupyter.registry import Registry, parse_model_uri
from nstarx_jupyter.security.home import parse_duration

if TYPE_CHECKING:
    import pandas as pd

    from nstarx_jupyter.deployment.local import LocalBackend
    from nstarx_jupyter.deployment.service import DeploymentService
    from nstarx_jupyter.protocol.control import DriftReferenceView, DriftView

__all__ = ["DRIFT_COLUMNS", "DriftMixin", "drift_figures", "reference_body", "registry_reference"]

log = logging.getLogger(__name__)

DRIFT_COLUMNS = ("feature", "test", "statistic", "p_value", "score", "threshold", "drifted",
                 "role")  # fmt: skip
"""The columns of `Deployment.drift()`, as the server names them."""
DEFAULT_WINDOW = "1h"
"""The window of the card's and the sidebar's drift badge (the server's default: cached)."""


def drift_figures(report: DriftView) -> dict[str, Any]:
    """The card's and the sidebar's drift badge from the control API's drift answer.

    Picked, not computed: status (`ok`, `drift`, `no reference`, `no traffic`), the drifted
    features, the overall score and the rows tested.
    """
    return {"status": report.status, "drifted": list(report.drifted), "score": report.score,
            "rows": report.rows}  # fmt: skip


def reference_body(
    data: Any, *, model: Any = None, predictions: Any = None, names: list[str] | None = None
) -> dict[str, Any]:
    """The control API's reference body for `data` (a DataFrame or 2-D array).

    A seeded sample of up to 1,000 rows; `predictions` (one per row of `data`) or else the
    predictions of `model` on the sampled rows, when it has `predict` and it works on them.
    """
    import numpy as np

    from nstarx_jupyter.registry.stats import SAMPLE_ROWS, sample_indices, sample_rows

    if names is None and hasattr(model, "feature_names_in_") and not hasattr(data, "columns"):
        names = [str(n) for n in model.feature_names_in_]
    body: dict[str, Any] = {"source": "data", **sample_rows(data, names)}
    picked = sample_indices(len(data), SAMPLE_ROWS)
    found = None
    if predictions is not None:
        found = np.asarray(predictions)[picked]
    elif model is not None and hasattr(model, "predict"):
        rows = data.iloc[picked] if hasattr(data, "iloc") else np.asarray(data)[picked]
        try:
            found = np.asarray(model.predict(rows))
        except Exception as exc:  # noqa: BLE001 - any model's failure: the first window is used
            log.info("no reference predictions (%s): the first live window stands in", exc)
    if found is not None and found.ndim == 1:
        body["predictions"] = [None if isinstance(v, float) and v != v else v
                               for v in found.tolist()]  # fmt: skip
    return body


def registry_reference(uri: str) -> dict[str, Any]:
    """The reference body of a registered version (`models:/NAME/V` or `models:/NAME@alias`).

    The sample its statistics kept at registration (`Registry.register(..., reference_data=X)`).
    """
    name, version, alias = parse_model_uri(uri)
    registry = Registry()
    if alias is not None:
        version = registry.get(name, alias=alias).version
    stats = registry.reference_stats(name, version)
    if stats is None or "sample" not in stats:
        raise InvalidInputError(f"{uri} has no reference sample: it was registered without "
                                "reference_data (or before samples were kept)")  # fmt: skip
    return {**stats, "source": "registry"}


class DriftMixin:
    """Drift methods of `Deployment` (which provides `name` and `service`).

    Drift is computed by nstarx's local server: on another backend each method raises
    `UnsupportedError` saying so.
    """

    name: str
    service: DeploymentService
    _charts: list[Any]

    def _drift_backend(self) -> LocalBackend:
        return self.service.local("drift")

    def set_reference(
        self,
        data: Any = None,
        *,
        model: Any = None,
        predictions: Any = None,
        window: tuple[float | str, float | str] | None = None,
        registry: str | None = None,
    ) -> dict[str, Any]:
        """Compare live traffic with `data` (training features) from now on; kept by the server.

        Or with past live traffic: `window=("2h", "1h")` takes the rows from two hours to one
        hour ago; or with what a registered version was given as reference data:
        `registry="models:/iris/3"` (its statistics' sample). Returns what the server keeps:
        source, rows, features. `set_reference(None)` alone removes the reference.
        """
        backend = self._drift_backend()
        kept: DriftReferenceView | None
        if registry is not None:
            kept = backend.set_drift_reference(self.name, registry_reference(registry))
        elif window is not None:
            since, until = (_seconds(w) for w in window)
            kept = backend.set_drift_reference(
                self.name, {"window": {"since_s": since, "until_s": until}})  # fmt: skip
        elif data is None:
            kept = backend.set_drift_reference(self.name, None)
        else:
            body = reference_body(data, model=model, predictions=predictions)
            kept = backend.set_drift_reference(self.name, body)
        return {} if kept is None else kept.model_dump(mode="json")

    def drift_figures(self) -> dict[str, Any]:
        """The last hour's drift badge (status, drifted features, score, rows): the card's."""
        return drift_figures(self._drift_view(DEFAULT_WINDOW))

    def drift_report(self, window: float | str = "1h") -> dict[str, Any]:
        """The server's drift answer as it is, as JSON (tests, score, rows, histograms)."""
        return self._drift_view(window).model_dump(mode="json")

    def _drift_view(self, window: float | str) -> DriftView:
        return self._drift_backend().drift(self.name, _window(window))

    def drift(self, window: float | str = "1h") -> pd.DataFrame:
        """Each feature's drift tests over the last `window` (seconds, `"15m"`, up to `"6h"`).

        One row per feature and test: the statistic, the p-value (KS, chi-squared, missing
        rate; None for PSI and Jensen-Shannon), the score, the threshold it was held to and
        whether it flags drift (the prediction's rows have `role == "prediction"`).
        `.attrs` holds the overall score, the rows in the window, the status (`ok`, `drift`,
        `no reference`, `no traffic`) and the reference's source.
        """
        import pandas as pd

        view = self._drift_view(window)
        columns = list(DRIFT_COLUMNS)
        frame = pd.DataFrame([test.model_dump(include=set(columns)) for test in view.features],
                             columns=columns)  # fmt: skip
        frame.attrs.update(score=view.score, rows=view.rows, seen=view.seen, status=view.status,
                           window_s=view.window_s, reference_source=view.reference_source,
                           drifted=list(view.drifted))  # fmt: skip
        return frame

    def drift_chart(
        self, feature: str | None = None, *, window: float | str = "15m", interval_s: float = 5.0
    ) -> Any:
        """A live plotly `FigureWidget` of drift scores over time and reference vs live.

        Top: each feature's drift score over time; bottom: the reference's against the live
        histogram of `feature` (default: the most drifted). Redrawn every `interval_s` from the
        server's report over the last `window`.
        """
        chart: DriftChart = DriftChart(lambda: self.drift_report(window), title=self.name,
                                       feature=feature, interval_s=interval_s)  # fmt: skip
        chart.start()
        self._charts.append(chart)
        return chart.figure


def _window(value: float | str) -> str:
    return f"{float(value):g}" if isinstance(value, int | float) else value


def _seconds(value: float | str) -> float:
    return float(value) if isinstance(value, int | float) else parse_duration(value)
