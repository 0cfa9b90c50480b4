"""Explanations of a deployment from a notebook cell: SHAP values per row, importance over time.

Every number is the local server's (`POST /nstarx/v1/deployments/NAME/explain`, `GET
.../importance`): the server holds the model and the live rows, picks the explainer (tree,
linear or kernel) and computes; the notebook reshapes the answers into DataFrames and a chart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nstarx_jupyter.monitoring.live import ImportanceChart

if TYPE_CHECKING:
    import pandas as pd

    from nstarx_jupyter.deployment.local import LocalBackend
    from nstarx_jupyter.deployment.service import DeploymentService
    from nstarx_jupyter.protocol.control import ImportanceView

__all__ = ["EXPLAIN_COLUMNS", "IMPORTANCE_COLUMNS", "ExplainMixin", "explain_rows"]

EXPLAIN_COLUMNS = ("row", "feature", "value", "shap", "output")
"""The long form of `Deployment.explain()`: one line per row and feature."""
IMPORTANCE_COLUMNS = ("feature", "importance", "rank")
"""The columns of `Deployment.feature_importance()`, largest first."""


def explain_rows(data: Any) -> list[Any]:
    """Rows to explain as the control API takes them: a DataFrame by column, else lists.

    A DataFrame (or a list of dicts) goes by feature name; an array or list of lists by order.
    """
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        return [{str(k): _plain(v) for k, v in row.items()} for row in data.to_dict("records")]
    if isinstance(data, dict):
        return [{str(k): _plain(v) for k, v in data.items()}]
    rows = data.tolist() if hasattr(data, "tolist") else list(data)
    if rows and not isinstance(rows[0], list | tuple | dict):
        rows = [rows]  # one row
    return [dict(row) if isinstance(row, dict) else [_plain(v) for v in row] for row in rows]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class ExplainMixin:
    """Explanation methods of `Deployment` (which provides `name` and `service`).

    Explanations are computed by nstarx's local server: on another backend each method raises
    `UnsupportedError` saying so.
    """

    name: str
    service: DeploymentService
    _charts: list[Any]

    def _explain_backend(self) -> LocalBackend:
        return self.service.local("explain")

    def explain_report(self, data: Any, *, label: str | None = None) -> dict[str, Any]:
        """The server's explain answer as JSON (explainer, space, base values, SHAP values)."""
        return (
            self._explain_backend()
            .explain(self.name, explain_rows(data), label)
            .model_dump(mode="json")
        )

    def explain(self, data: Any, *, label: str | None = None, wide: bool = False) -> pd.DataFrame:
        """SHAP values of up to 100 rows (a DataFrame, an array, a dict for one row).

        Long form: one line per row and feature (`row`, `feature`, `value` its input value,
        `shap`, `output` the class explained: each row's predicted one unless `label`). `wide`:
        one line per row, one column per feature's SHAP value, plus `base` and `prediction`
        (`base` plus the row's SHAP values: the model's output in `.attrs["space"]`).
        `.attrs` holds the explainer (`tree`, `linear`, `kernel`), the space (`probability`,
        `log-odds`, `raw`) and the seconds it took.
        """
        import pandas as pd

        rows = explain_rows(data)
        view = self._explain_backend().explain(self.name, rows, label)
        features = view.features
        if wide:
            frame = pd.DataFrame([dict(zip(features, r.shap, strict=True), output=r.output,
                                       base=r.base, prediction=r.value)
                                  for r in view.rows])  # fmt: skip
        else:
            lines = []
            for i, (sent, answered) in enumerate(zip(rows, view.rows, strict=True)):
                values = [sent[f] for f in features] if isinstance(sent, dict) else sent
                shap, output = answered.shap, answered.output
                lines += [{"row": i, "feature": f, "value": v, "shap": s, "output": output}
                          for f, v, s in zip(features, values, shap, strict=True)]  # fmt: skip
            frame = pd.DataFrame(lines, columns=list(EXPLAIN_COLUMNS))
        frame.attrs.update(explainer=view.explainer, space=view.space, seconds=view.seconds,
                           version=view.version, base=[r.base for r in view.rows])  # fmt: skip
        return frame

    def importance_report(self, window: float | str = "1h") -> dict[str, Any]:
        """The server's importance answer as JSON (features, rows explained, explainer)."""
        return self._importance_view(window).model_dump(mode="json")

    def _importance_view(self, window: float | str) -> ImportanceView:
        value = f"{float(window):g}" if isinstance(window, int | float) else window
        return self._explain_backend().importance(self.name, value)

    def feature_importance(self, window: float | str = "1h") -> pd.DataFrame:
        """Each feature's mean |SHAP value| over the live rows of the last `window`, largest first.

        The rows are those drift detection samples (up to 120 a minute; up to 200 of them are
        explained, 50 with the kernel explainer). `.attrs` holds the rows explained, the
        status (`ok`, `no traffic`), the explainer and the space.
        """
        import pandas as pd

        view = self._importance_view(window)
        columns = list(IMPORTANCE_COLUMNS)
        frame = pd.DataFrame([row.model_dump(include=set(columns)) for row in view.features],
                             columns=columns)  # fmt: skip
        frame.attrs.update(rows=view.rows, status=view.status, window_s=view.window_s,
                           explainer=view.explainer, space=view.space)  # fmt: skip
        return frame

    def importance_chart(self, *, window: float | str = "1h", interval_s: float = 60.0) -> Any:
        """A plotly `FigureWidget` of the importance over the last `window`, redrawn live.

        Every `interval_s` the server's importance is fetched again (it is recomputed once a
        minute at most), so the bars follow the traffic.
        """
        chart = ImportanceChart(lambda: self.importance_report(window), title=self.name,
                                interval_s=interval_s)  # fmt: skip
        chart.start()
        self._charts.append(chart)
        return chart.figure
