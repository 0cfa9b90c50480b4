"""Automated canary analysis: step a canary's traffic up while it behaves, roll back when not.

`deployment.canary(model, percent=10, auto=AnalysisPolicy())` starts a `CanaryAnalysis` on a
background thread of the notebook's kernel. At each step it waits `interval_s`, compares the
canary with the stable revision over that window (error rate, p99 latency) and either moves to
the next percentage, promotes after the last one, or rolls back, writing each decision to the
deployment's log and to the table shown under the cell.
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["AnalysisPolicy", "CanaryAnalysis", "Rollout", "Step"]


@dataclass(frozen=True)
class AnalysisPolicy:
    """When a canary may take more traffic, and when it must go."""

    steps: tuple[int, ...] = (10, 25, 50, 100)
    """Canary percentages in order, each judged after `interval_s`; after the last one (100, or
    any share below it) passes, the canary is promoted."""
    interval_s: float = 30.0
    """Time at each step before judging it (and the window the figures cover)."""
    min_requests: int = 50
    """Canary requests a step needs before it is judged; fewer extends the step."""
    max_wait_s: float | None = None
    """Longest a step may wait for `min_requests` (default: 4 intervals); then it rolls back."""
    max_error_rate_increase: float = 0.01
    """The canary's error rate may exceed the stable one's by this much (absolute)."""
    max_p99_ratio: float = 1.5
    """The canary's p99 latency may be this many times the stable one's..."""
    p99_slack_ms: float = 5.0
    """...plus this much, so sub-millisecond noise does not fail a healthy canary."""

    def __post_init__(self) -> None:
        if not self.steps or any(not 0 < p <= 100 for p in self.steps):
            raise ValueError("steps: percentages between 1 and 100")
        if list(self.steps) != sorted(self.steps):
            raise ValueError("steps: in increasing order")
        if self.interval_s <= 0 or self.min_requests < 1:
            raise ValueError("interval_s and min_requests: positive")


@dataclass
class Step:
    """One judged step of the analysis."""

    percent: int
    decision: str
    """`next`, `promote`, `rollback`, `waiting` or `error`."""
    reason: str
    canary: dict[str, Any] = field(default_factory=dict)
    stable: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


class Rollout(Protocol):
    """The steps an analysis takes on a deployment (a notebook `Deployment` has them)."""

    name: str

    def set_canary_percent(self, percent: int) -> Any:
        """Move the canary's share of traffic."""

    def promote(self) -> Any:
        """Give the canary all the traffic."""

    def rollback(self) -> Any:
        """Give the stable revision all the traffic."""

    def note(self, text: str) -> None:
        """Write a line into the deployment's events."""

    def variants(self, window_s: float) -> dict[str, Any]:
        """Per-variant figures over the last `window_s` seconds."""


class CanaryAnalysis:
    """The running analysis: `history`, `state` (`running`, `promoted`, `rolled back`...)."""

    def __init__(self, deployment: Rollout, policy: AnalysisPolicy) -> None:
        self.deployment = deployment
        self.policy = policy
        self.history: list[Step] = []
        self.state = "running"
        self._stop = threading.Event()
        self._widget: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"nstarx-canary-{deployment.name}")  # fmt: skip

    def start(self) -> CanaryAnalysis:
        """Start judging on a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop judging; the traffic stays where it is."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self.state == "running":
            self.state = "stopped"
            self._refresh()

    def wait(self, timeout: float | None = None) -> str:
        """Block until the analysis ends; returns its final state."""
        self._thread.join(timeout)
        return self.state

    def _run(self) -> None:
        policy, dep = self.policy, self.deployment
        try:
            for i, percent in enumerate(policy.steps):
                if percent == 100:  # all the traffic: nothing left to compare with, promote
                    break
                if i > 0:
                    dep.set_canary_percent(percent)
                    dep.note(f"canary analysis: {percent}% to the canary")
                step = self._judge(percent)
                self.history.append(step)
                self._refresh()
                if step.decision == "rollback":
                    dep.rollback()
                    dep.note(f"canary analysis rolled back at {percent}%: {step.reason}")
                    self.state = "rolled back"
                    return
                if step.decision == "stopped":
                    return
            dep.promote()
            dep.note("canary analysis promoted the canary: every step passed")
            self.history.append(Step(100, "promote", "every step passed"))
            self.state = "promoted"
        except Exception as exc:  # noqa: BLE001 - shown in the table instead of a lost thread
            self.history.append(Step(0, "error", f"{type(exc).__name__}: {exc}"))
            self.state = "failed"
        finally:
            self._refresh()

    def _judge(self, percent: int) -> Step:
        """Wait a step's interval (longer while the canary has too few requests), then judge."""
        policy = self.policy
        started = time.monotonic()
        limit = policy.max_wait_s if policy.max_wait_s is not None else 4 * policy.interval_s
        if self._stop.wait(policy.interval_s):
            return Step(percent, "stopped", "stopped by the user")
        while True:
            elapsed = time.monotonic() - started
            figures = self._figures(min(elapsed, 300.0))  # this step's requests only
            canary, stable = figures.get("canary", {}), figures.get("stable", {})
            if canary.get("requests", 0) >= policy.min_requests:
                return self._decide(percent, canary, stable)
            if elapsed >= limit:
                reason = (f"only {canary.get('requests', 0)} canary requests in {elapsed:.0f} s "
                          f"(needs {policy.min_requests})")  # fmt: skip
                return Step(percent, "rollback", reason, canary, stable)
            if self._stop.wait(min(policy.interval_s, 1.0)):
                return Step(percent, "stopped", "stopped by the user")

    def _figures(self, window_s: float) -> dict[str, dict[str, Any]]:
        rows = self.deployment.variants(window_s)["variants"]
        return {row["variant"]: row for row in rows}

    def _decide(self, percent: int, canary: dict[str, Any], stable: dict[str, Any]) -> Step:
        policy = self.policy
        c_err, s_err = canary.get("error_rate") or 0.0, stable.get("error_rate") or 0.0
        if c_err > s_err + policy.max_error_rate_increase:
            reason = f"error rate {c_err:.2%} vs {s_err:.2%} on stable"
            return Step(percent, "rollback", reason, canary, stable)
        c_p99, s_p99 = canary.get("p99_ms"), stable.get("p99_ms")
        if c_p99 is not None and s_p99 is not None:
            allowed = s_p99 * policy.max_p99_ratio + policy.p99_slack_ms
            if c_p99 > allowed:
                return Step(percent, "rollback",
                            f"p99 {c_p99:.1f} ms over the {allowed:.1f} ms allowed", canary,
                            stable)  # fmt: skip
        reason = f"error rate {c_err:.2%}, p99 {c_p99 or 0:.1f} ms: within margins"
        return Step(percent, "next", reason, canary, stable)

    # -- display -------------------------------------------------------------------------------

    def to_html(self) -> str:
        """The steps so far as an HTML table."""
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
                time.strftime("%H:%M:%S", time.localtime(step.at)), f"{step.percent}%",
                step.decision, step.canary.get("requests", ""),
                _ms(step.canary.get("p99_ms")), _ms(step.stable.get("p99_ms")), step.reason,
            )) + "</tr>"
            for step in self.history
        )  # fmt: skip
        head = "".join(f"<th>{h}</th>" for h in ("time", "canary %", "decision", "requests",
                                                  "canary p99", "stable p99", "why"))  # fmt: skip
        title = f"Canary analysis of {html.escape(self.deployment.name)}"
        return (
            f"<div class='nstarx-canary'><p><b>{title}</b>: {html.escape(self.state)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
        )

    def _refresh(self) -> None:
        if self._widget is not None:
            self._widget.value = self.to_html()

    def widget(self) -> Any:
        """An HTML widget that redraws at every step."""
        if self._widget is None:
            import ipywidgets

            self._widget = ipywidgets.HTML(self.to_html())
        return self._widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        try:
            bundle = self.widget()._repr_mimebundle_(**kwargs)
        except ImportError:
            return {"text/html": self.to_html(), "text/plain": repr(self)}
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        name, steps = self.deployment.name, len(self.history)
        return f"CanaryAnalysis({name!r}, state={self.state!r}, steps={steps})"


def _ms(value: Any) -> str:
    return "" if value is None else f"{value:.1f} ms"
