"""Drift per deployment: sampled live rows against a reference, computed off the request path.

The request path only appends `(time, inputs, outputs)` (references to the tensors it already
holds) to the deployment's ring (`DriftMonitor.ring`, `RING` entries; when more requests come
between two drains the oldest are dropped, which samples them). Everything else happens off the
path: a background task (every `DRAIN_S`) or a read moves the ring's entries into per-minute
reservoirs of at most `ROWS_PER_MINUTE` rows (seeded reservoir sampling; a batch request gives
up to `ROWS_PER_REQUEST` rows), kept `KEEP_S`; a report over a window (`"1h"`, `"15m"`, ...)
tests the window's rows against the reference (`monitoring.drift`).

The reference is the one the notebook sends (`deploy(..., reference_data=X)`: a seeded sample of
X and, where the model could predict it, its predictions), a registered model's statistics with
their sample, or the live rows of a chosen past window. It is kept in `STATE/drift/NAME.json`
and read back after a restart; the live rows are not (a restart starts an empty window).
Without reference predictions, the earliest predictions kept (up to 1,000) are frozen, and kept,
as the predictions' reference once a report finds at least `FIRST_WINDOW_ROWS` of them.

Columns: one 2-D input tensor gives one feature per column, named by the reference's features in
order (else `feature_0`, ...); several inputs of one value per row give one feature per input,
by its name. The prediction is the first output with one value per row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from prometheus_client.core import GaugeMetricFamily

from nstarx_jupyter.config import atomic_write
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.monitoring.drift import Column, DriftResult, Thresholds, compare, histograms
from nstarx_jupyter.serving.background import LoopTask
from nstarx_jupyter.serving.drift_rows import (
    PREDICTION_KEY,
    Reference,
    columns_of,
    feature_name,
    json_list,
    row_at,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

    from nstarx_jupyter.runtimes.base import Tensors

__all__ = [
    "DEFAULT_WINDOW_S",
    "KEEP_S",
    "DriftHub",
    "DriftMonitor",
    "Reference",
]

log = logging.getLogger(__name__)

RING = 4096
"""Requests held between two drains (references to their tensors, nothing copied)."""
DRAIN_S = 2.0
"""How often the background task empties the rings."""
ROWS_PER_MINUTE = 120
"""Rows kept per deployment and minute (a uniform sample of the minute's rows)."""
ROWS_PER_REQUEST = 32
"""Rows taken from one batch request (a uniform sample of its rows)."""
KEEP_S = 6 * 3600
"""Live rows are kept six hours: the longest window (43,200 rows at most per deployment)."""
DEFAULT_WINDOW_S = 3600.0
"""The window of the sidebar's badge, the Prometheus gauges and the per-minute rollups."""
FIRST_WINDOW_ROWS = 200
"""Predictions frozen as their reference when none was given."""
PREDICTION = "prediction"
"""The feature name of the model's predictions in a report."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
"""Names whose state file may be written (deployment names always are)."""
_REUSE_S = 30.0
"""A default-window report is reused this long while no row came (the window moves on too)."""
_REPORT_TTL_S = 120.0
"""A cached default-window report older than this is not a current score."""


@dataclass(slots=True)
class _Minute:
    """One minute's reservoir of rows (`{column key: value}`), `seen` rows offered."""

    rows: list[dict[Any, Any]] = field(default_factory=list)
    seen: int = 0


class DriftMonitor:
    """One deployment's live rows and reference (see the module's docstring)."""

    def __init__(self, name: str, folder: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.file = folder / f"{name}.json" if _SAFE_NAME.fullmatch(name) else None
        """The reference's state file (None for a name that cannot be a file name: not kept)."""
        self.clock = clock
        self.ring: deque[tuple[float, Tensors, Tensors]] = deque(maxlen=RING)
        """The request path's only contact: `append((time, inputs, outputs))`."""
        self._minutes: dict[int, _Minute] = {}
        self._random = random.Random(0)  # noqa: S311 - sampling rows, not secrets
        self._lock = threading.Lock()
        self.reference: Reference | None = None
        self.first_predictions: list[Any] | None = None
        self.revision = 0
        """Moves with every row kept and every reference change: an unchanged revision means an
        unchanged report (the sidebar's polls reuse it)."""
        self._load()

    # -- reference -----------------------------------------------------------------------------

    def _load(self) -> None:
        if self.file is None or not self.file.exists():
            return
        try:
            doc = orjson.loads(self.file.read_bytes())
            if doc.get("reference"):
                self.reference = Reference.parse(doc["reference"])
            self.first_predictions = doc.get("first_predictions")
        except (OSError, ValueError, InvalidInputError) as exc:
            log.error("cannot read the drift reference of %s from %s: %s", self.name, self.file,
                      exc)  # fmt: skip

    def _save(self) -> None:
        if self.file is None:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        doc = {"reference": None if self.reference is None else self.reference.to_json(),
               "first_predictions": self.first_predictions}  # fmt: skip
        atomic_write(self.file, orjson.dumps(doc))

    def set_reference(self, reference: Reference | None) -> None:
        """Compare with `reference` from now on (None: with nothing), kept across restarts."""
        with self._lock:
            self.reference = reference
            self.first_predictions = None
            self.revision += 1
            self._save()

    def reference_from_window(self, since_s: float, until_s: float) -> Reference:
        """The live rows from `since_s` to `until_s` seconds ago as the reference."""
        if not 0 <= until_s < since_s <= KEEP_S:
            raise InvalidInputError(f"window: 0 <= until_s < since_s <= {KEEP_S}")
        self.drain()
        now = self.clock()
        columns, predictions = self._live(now - since_s, now - until_s, names=None)
        if not columns or not next(iter(columns.values())).size:
            raise InvalidInputError("window: no live rows recorded in it")
        reference = Reference("window", {k: json_list(v) for k, v in columns.items()},
                              json_list(predictions) if predictions is not None else None,
                              "reference" if predictions is not None else None)  # fmt: skip
        self.set_reference(reference)
        return reference

    # -- off the request path ------------------------------------------------------------------

    def drain(self) -> int:
        """Move the ring's entries into the minute reservoirs; returns how many were moved."""
        moved = 0
        with self._lock:
            while True:
                try:
                    when, inputs, outputs = self.ring.popleft()
                except IndexError:
                    break
                moved += 1
                try:
                    self._add(when, inputs, outputs)
                except Exception:  # an odd request's tensors: skip it
                    log.debug("drift: cannot read a request of %s", self.name, exc_info=True)
            horizon = int((self.clock() - KEEP_S) // 60)
            for minute in [m for m in self._minutes if m < horizon]:
                del self._minutes[minute]
        return moved

    def _add(self, when: float, inputs: Tensors, outputs: Tensors) -> None:
        columns, count = columns_of(inputs, outputs)
        if not count:
            return
        picked = range(count)
        if count > ROWS_PER_REQUEST:
            picked = sorted(self._random.sample(range(count), ROWS_PER_REQUEST))  # type: ignore[assignment]
        bucket = self._minutes.setdefault(int(when // 60), _Minute())
        self.revision += 1
        # The reservoir decides first; only the rows it keeps become dicts (most of a busy
        # minute's rows are not kept, and building a row costs more than the decision).
        for index in picked:
            bucket.seen += 1
            if len(bucket.rows) < ROWS_PER_MINUTE:
                bucket.rows.append(row_at(columns, index))
            else:
                slot = self._random.randrange(bucket.seen)
                if slot < ROWS_PER_MINUTE:
                    bucket.rows[slot] = row_at(columns, index)

    def _live(
        self, start: float, end: float, names: list[str] | None
    ) -> tuple[dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any] | None]:
        """The kept rows of minutes overlapping [start, end]: columns by feature, predictions."""
        with self._lock:
            rows = [row for minute, bucket in sorted(self._minutes.items())
                    if start // 60 <= minute <= end // 60 for row in bucket.rows]  # fmt: skip
        keys: dict[Any, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row))
        columns: dict[str, np.ndarray[Any, Any]] = {}
        predictions = None
        for key in keys:
            values = np.asarray([row.get(key) for row in rows], dtype=object)
            if key is PREDICTION_KEY:
                predictions = values
            else:
                columns[feature_name(key, names)] = values
        return columns, predictions

    def live_columns(self, window_s: float) -> dict[str, np.ndarray[Any, Any]]:
        """The sampled live rows of the last `window_s` seconds, by feature (explanations)."""
        self.drain()
        now = self.clock()
        names = list(self.reference.columns) if self.reference is not None else None
        return self._live(now - window_s, now, names)[0]

    def seen(self, window_s: float) -> int:
        """Rows offered to the reservoirs in the last `window_s` seconds (before sampling)."""
        now = self.clock()
        with self._lock:
            return sum(b.seen for m, b in self._minutes.items()
                       if (now - window_s) // 60 <= m)  # fmt: skip

    def report(self, window_s: float, *, thresholds: Thresholds | None = None) -> dict[str, Any]:
        """Every feature's tests over the last `window_s` seconds (the control API's body)."""
        self.drain()
        now = self.clock()
        reference = self.reference
        names = list(reference.columns) if reference is not None else None
        live, predictions = self._live(now - window_s, now, names)
        self._freeze_first_predictions(predictions)
        ref_columns: dict[str, Column] = {}
        if reference is not None:
            ref_columns = {name: Column.of(values) for name, values in reference.columns.items()}
        ref_predictions = (reference.predictions if reference is not None
                           and reference.predictions else self.first_predictions)  # fmt: skip
        live_columns = {name: Column.of(values, ref_columns[name].kind)
                        for name, values in live.items() if name in ref_columns}  # fmt: skip
        roles: dict[str, Any] = {}
        if ref_predictions and predictions is not None and predictions.size:
            ref_columns[PREDICTION] = Column.of(ref_predictions)
            live_columns[PREDICTION] = Column.of(predictions, ref_columns[PREDICTION].kind)
            roles[PREDICTION] = "prediction"
        result = compare(ref_columns, live_columns, roles=roles, thresholds=thresholds)
        rows = max((int(v.size) for v in live.values()), default=0)
        return _body(self.name, window_s, now, rows, self.seen(window_s), reference, result,
                     self._prediction_source(reference), ref_columns, live_columns,
                     missing=[n for n in ref_columns if n not in live_columns])  # fmt: skip

    def _prediction_source(self, reference: Reference | None) -> str | None:
        if reference is not None and reference.predictions:
            return reference.predictions_source or "reference"
        return "first window" if self.first_predictions else None

    def _freeze_first_predictions(self, window: np.ndarray[Any, Any] | None) -> None:
        """Keep the first predictions seen as their reference (when none was given)."""
        if self.first_predictions is not None or (self.reference and self.reference.predictions):
            return
        with self._lock:
            first = [row[PREDICTION_KEY] for _, bucket in sorted(self._minutes.items())
                     for row in bucket.rows if PREDICTION_KEY in row]  # fmt: skip
        if len(first) >= FIRST_WINDOW_ROWS and window is not None:
            self.first_predictions = json_list(np.asarray(first[:FIRST_WINDOW_ROWS * 5],
                                                           dtype=object))  # fmt: skip
            with self._lock:
                self._save()


def _body(
    name: str,
    window_s: float,
    now: float,
    rows: int,
    seen: int,
    reference: Reference | None,
    result: DriftResult,
    predictions: str | None,
    ref_columns: dict[str, Column],
    live_columns: dict[str, Column],
    missing: list[str],
) -> dict[str, Any]:
    tests = result.to_json()["tests"]
    drifted = result.drifted_features
    if reference is None:
        status = "no reference"
    elif not tests:
        status = "no traffic"
    else:
        status = "drift" if drifted else "ok"
    return {
        "name": name, "window_s": window_s, "computed_at": now, "rows": rows, "seen": seen,
        "status": status, "score": result.score, "drifted": drifted, "features": tests,
        "reference": None if reference is None else reference.describe(),
        "reference_source": "none" if reference is None else reference.source,
        "predictions_reference": predictions, "not_in_traffic": missing,
        "histograms": {feature: histograms(ref_columns[feature], live_columns[feature])
                       for feature in live_columns},
    }  # fmt: skip


class DriftHub:
    """Every deployment's `DriftMonitor` on one server, the drain task and the cached scores."""

    def __init__(self, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.folder = state_dir / "drift"
        self.clock = clock
        self.monitors: dict[str, DriftMonitor] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        """Each deployment's last default-window report (the gauges and the rollups read it)."""
        self._revisions: dict[str, int] = {}
        self._background = LoopTask(self._run)
        self._rng = np.random.default_rng(0)

    def tap(self, name: str, inputs: Tensors, outputs: Tensors) -> None:
        """The request path: one reference appended to the deployment's ring (about 0.2 µs).

        A batch of more than `ROWS_PER_REQUEST` rows is cut to a sample of that many rows
        first (a copy): the ring must not hold a large request's tensors until the next drain.
        A first input of more than two dimensions (an image) is not tabular: not kept at all.
        """
        monitor = self.monitors.get(name)
        if monitor is None:
            monitor = self.monitor(name)
        if inputs:
            shape = next(iter(inputs.values())).shape
            if len(shape) > 2:  # images, sequences: not tabular, never tested, not held
                return
            if shape and shape[0] > ROWS_PER_REQUEST:
                inputs, outputs = self._cut(shape[0], inputs, outputs)
        monitor.ring.append((self.clock(), inputs, outputs))

    def _cut(self, rows: int, inputs: Tensors, outputs: Tensors) -> tuple[Tensors, Tensors]:
        picked = np.sort(self._rng.choice(rows, ROWS_PER_REQUEST, replace=False))

        def cut(tensors: Tensors) -> Tensors:
            return {key: array[picked] if array.ndim and array.shape[0] == rows else array
                    for key, array in tensors.items()}  # fmt: skip

        return cut(inputs), cut(outputs)

    def monitor(self, name: str) -> DriftMonitor:
        """`name`'s monitor (made, with its saved reference, on first use)."""
        found = self.monitors.get(name)
        if found is None:
            found = self.monitors[name] = DriftMonitor(name, self.folder, clock=self.clock)
        return found

    def forget(self, name: str) -> None:
        """A deleted deployment: drop its rows, its reference file and its gauges."""
        self.monitors.pop(name, None)
        self.latest.pop(name, None)
        self._revisions.pop(name, None)
        if _SAFE_NAME.fullmatch(name):
            with contextlib.suppress(OSError):
                (self.folder / f"{name}.json").unlink()

    def report(self, name: str, window_s: float = DEFAULT_WINDOW_S) -> dict[str, Any]:
        """`name`'s report over `window_s` (a thread's work: it can take milliseconds).

        The default window's report is cached: asked again before any row or the reference
        changed (and within `_REUSE_S`), the same report answers (the sidebar polls it).
        """
        if not 0 < window_s <= KEEP_S:
            raise InvalidInputError(f"window: between 1s and {KEEP_S // 3600}h")
        monitor = self.monitor(name)
        if window_s != DEFAULT_WINDOW_S:
            return monitor.report(window_s)
        monitor.drain()
        cached = self.latest.get(name)
        if (cached is not None and self._revisions.get(name) == monitor.revision
                and self.clock() - cached["computed_at"] < _REUSE_S):  # fmt: skip
            return cached
        revision = monitor.revision
        report = self.latest[name] = monitor.report(window_s)
        self._revisions[name] = revision
        return report

    def score(self, name: str) -> float | None:
        """The last default-window score of `name` (None without a recent one)."""
        report = self.latest.get(name)
        if report is None or self.clock() - report["computed_at"] > _REPORT_TTL_S:
            return None
        score = report["score"]
        return None if score is None else float(score)

    def start(self) -> None:
        """Drain every `DRAIN_S`, and report the default window once a minute (a thread)."""
        self._background.start()

    async def close(self) -> None:
        """Stop the background task."""
        await self._background.stop()

    async def _run(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(DRAIN_S)
            ticks += 1
            try:
                await asyncio.to_thread(self._tick, ticks % int(60 / DRAIN_S) == 1)
            except Exception:  # a task boundary: one failed round must not end drift detection
                log.exception("drift detection failed")

    def _tick(self, with_reports: bool) -> None:
        for name, monitor in list(self.monitors.items()):
            monitor.drain()
            if with_reports and monitor.reference is not None:
                self.report(name)

    def collector(self) -> Collector:
        """A Prometheus collector of `nstarx_drift_score{deployment, feature, test}`."""
        return _DriftCollector(self)


class _DriftCollector:
    """Serves the last default-window reports' scores (never computes on a scrape)."""

    def __init__(self, hub: DriftHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        scores = GaugeMetricFamily(
            "nstarx_drift_score",
            "Drift score per feature and test over the last hour (PSI, KS D, Cramér's V, JS "
            "distance, |missing-rate change|); feature `_overall` is the largest score/threshold.",
            labels=["deployment", "feature", "test"],
        )
        drifted = GaugeMetricFamily("nstarx_drift_features", "Features drifted over the last hour.",
                                    labels=["deployment"])  # fmt: skip
        for name, report in list(self.hub.latest.items()):
            for test in report["features"]:
                scores.add_metric([name, test["feature"], test["test"]], test["score"])
            if report["score"] is not None:
                scores.add_metric([name, "_overall", "max_ratio"], report["score"])
            drifted.add_metric([name], len(report["drifted"]))
        yield scores
        yield drifted
