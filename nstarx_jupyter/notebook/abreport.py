"""`Deployment.ab_report()`: the server's A/B analysis shown under the cell, with plots."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nstarx_jupyter.protocol.control import AbComparison, AbReport

__all__ = ["ABReport"]


class ABReport:
    """Per-variant figures, each variant's tests against the control, and a plain verdict.

    Shows itself as a widget: a table of the tests (estimate, confidence interval, p-value,
    sample still needed, verdict) above plotly charts of latency, error rate and outcomes.
    `to_frame()` gives the tests as a pandas DataFrame; `report` is the server's answer and
    `doc` its JSON.
    """

    def __init__(self, report: AbReport) -> None:
        self.report = report

    @property
    def doc(self) -> dict[str, Any]:
        """The server's answer as JSON."""
        return self.report.model_dump(mode="json")

    @property
    def verdict(self) -> str:
        """One line per variant: what the data says so far."""
        return self.report.verdict

    @property
    def control(self) -> str:
        """The variant the others are compared with."""
        return self.report.control

    def comparisons(self, variant: str) -> dict[str, dict[str, Any]]:
        """The tests of `variant` against the control, by metric, as the JSON answer has them."""
        return {
            metric: test.model_dump(mode="json") for metric, test in self._tests(variant).items()
        }

    def _tests(self, variant: str) -> dict[str, AbComparison]:
        return {test.metric: test for test in self.report.comparisons.get(variant, [])}

    def to_frame(self) -> Any:
        """Every test as a row of a pandas DataFrame (variant, metric, test, estimates...)."""
        import pandas as pd

        rows = [{"variant": v, **test.model_dump()}
                for v, tests in self.report.comparisons.items() for test in tests]  # fmt: skip
        return pd.DataFrame(rows)

    def figure(self) -> Any:
        """Latency percentiles, error rates and outcomes per variant, as a plotly figure."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        variants = self.report.variants
        names = list(variants)
        fig = make_subplots(rows=1, cols=3, subplot_titles=(
            "latency (ms)", "error rate (%)", "outcome (mean of feedback)"))  # fmt: skip
        percentiles = {"p50": [variants[n].p50_ms for n in names],
                       "p95": [variants[n].p95_ms for n in names],
                       "p99": [variants[n].p99_ms for n in names]}  # fmt: skip
        for label, values in percentiles.items():
            fig.add_trace(go.Bar(name=label, x=names, y=values), row=1, col=1)
        rates = [100 * (variants[n].error_rate or 0) for n in names]
        fig.add_trace(go.Bar(name="errors", x=names, y=rates, showlegend=False), row=1, col=2)
        means, spans = [], []
        for n in names:
            means.append(variants[n].outcome_mean)
            test = self._outcome_test(n)
            spans.append(None if test is None or test.ci_high is None or test.ci_low is None
                         else (test.ci_high - test.ci_low) / 2)  # fmt: skip
        fig.add_trace(go.Bar(name="outcome", x=names, y=means, showlegend=False,
                             error_y={"type": "data", "array": spans}), row=1, col=3)  # fmt: skip
        fig.update_layout(barmode="group", height=320, margin={"t": 40, "b": 30, "l": 40,
                                                                "r": 10})  # fmt: skip
        return fig

    def _outcome_test(self, variant: str) -> AbComparison | None:
        tests = self._tests(variant)
        return tests.get("outcome rate") or tests.get("outcome")

    def to_html(self) -> str:
        """The verdict and the table of tests as HTML."""
        rows = []
        for variant, tests in self.report.comparisons.items():
            for t in tests:
                ci = "" if t.ci_low is None else f"[{_fmt(t.ci_low)}, {_fmt(t.ci_high)}]"
                cells = (variant, t.metric, t.test, _fmt(t.control), _fmt(t.variant),
                         _fmt(t.difference), ci, _fmt(t.p_value),
                         f"{t.n_control} / {t.n_variant}",
                         "" if t.needed_per_arm is None else str(t.needed_per_arm),
                         t.verdict)  # fmt: skip
                rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
                            + "</tr>")  # fmt: skip
        level = f"{100 * (1 - self.report.alpha):.0f}% CI"
        head = ("variant", "metric", "test", self.control, "variant", "difference", level, "p",
                "n", "planned n", "verdict")  # fmt: skip
        header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        return (f"<div class='nstarx-ab'><p><b>A/B report</b> against "
                f"<code>{html.escape(self.control)}</code>: {html.escape(self.verdict)}</p>"
                f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody>"
                "</table></div>")  # fmt: skip

    def widget(self) -> Any:
        """The table and the charts in one ipywidgets box."""
        import ipywidgets
        import plotly.graph_objects as go

        return ipywidgets.VBox([ipywidgets.HTML(self.to_html()), go.FigureWidget(self.figure())])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        try:
            bundle = self.widget()._repr_mimebundle_(**kwargs)
        except ImportError:  # no notebook extra: the table alone
            return {"text/html": self.to_html(), "text/plain": self.verdict}
        bundle["text/plain"] = self.verdict
        return bundle

    def __repr__(self) -> str:
        return f"ABReport(control={self.control!r}, verdict={self.verdict!r})"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
