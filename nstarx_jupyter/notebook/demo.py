"""`nstarx demo`: the quickstart notebook's flow, headless, printed step by step.

Train → deploy (a key is minted, MLflow registers the model behind the deployment) → predict
with the client and show the cURL form → a short load test read back from the server's own
latency window → deploy a second model as a new revision → clean up when asked.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from nstarx_jupyter.errors import MissingExtraError, NstarxError

if TYPE_CHECKING:
    from pathlib import Path

    from nstarx_jupyter.notebook.api import Deployment

__all__ = ["FEATURES", "run_demo"]

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
RECORD = dict(zip(FEATURES, (5.1, 3.5, 1.4, 0.2), strict=True))


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    features = iris.data.set_axis(list(FEATURES), axis=1)
    return features, iris.target_names[iris.target]  # answers say "setosa", not 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def run_demo(
    *,
    rps: float = 100,
    duration_s: float = 5,
    cleanup: bool = False,
    out: TextIO | None = None,
    home: Path | None = None,
) -> int:
    """Run the flow and print each step; the deployment keeps serving unless `cleanup`.

    `home`: the $NSTARX_HOME the caller set for the demo, named in the commands it prints.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from nstarx_jupyter.notebook.api import deploy

    out = out or sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    x, y = _iris()
    model = LogisticRegression(max_iter=1000, random_state=0).fit(x, y)
    if home is not None:
        say(f"0. the demo's own home (its registry, server and keys): {home}")
    say(f"1. trained {type(model).__name__} on iris: {len(x)} rows, features {', '.join(FEATURES)}")
    began = time.perf_counter()
    dep = deploy(model, "iris")
    took = time.perf_counter() - began
    doc = dep.describe()  # one call for both figures
    say(f"2. deployed iris revision {doc.revision} ({doc.status}) in {took:.2f} s "
        f"at {dep.url}")  # fmt: skip
    say(f"   API key (shown once): {dep.api_key}")
    _predict(dep, say)
    _load(dep, rps, duration_s, say)
    _registered(dep, say)
    forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(x, y)
    second = deploy(forest, "iris")
    answer = second.predict(RECORD)
    say(f"6. deployed {type(forest).__name__} as revision {second.revision}: "
        f"{json.dumps(answer)}")  # fmt: skip
    if second.registration is not None:
        _wait(second)
    if cleanup:
        second.delete()
        second.service.local("stop").stop()
        say("7. deleted iris and stopped the local server")
    else:
        env = f"NSTARX_HOME={shlex.quote(str(home))} " if home is not None else ""
        say(f"7. iris keeps serving: `{env}nstarx status`, `… nstarx logs iris`, "
            "`… nstarx delete iris`, `… nstarx stop`")  # fmt: skip
    return 0


def _predict(dep: Deployment, say: Any) -> None:
    from nstarx_jupyter.client import InferenceClient

    with InferenceClient(endpoint=dep.url, api_key=dep.api_key) as client:
        answer = client.predict(RECORD)
    say(f"3. prediction for {json.dumps(RECORD)}:\n   {json.dumps(answer)}")
    say(f"   curl -s -X POST {dep.url}/predict -H 'Authorization: Bearer {dep.api_key}' "
        f"-H 'Content-Type: application/json' -d '{json.dumps(RECORD)}'")  # fmt: skip


def _load(dep: Deployment, rps: float, duration_s: float, say: Any) -> None:
    test = dep.load_test(RECORD, rps=rps, duration_s=duration_s)
    sent = test.wait().summary()
    server = dep.metrics(window_s=min(300, duration_s + 1))
    say(f"4. load test {rps:g} req/s for {duration_s:g} s: sent {sent['sent']}, "
        f"ok {sent['ok']}, errors {sent['errors']}")  # fmt: skip
    say(f"   server-side latency: p50 {_ms(server['p50_ms'])}, p95 {_ms(server['p95_ms'])}, "
        f"p99 {_ms(server['p99_ms'])} over the {server['requests']} requests it saw, "
        f"error rate {server['error_rate']:.1%}")  # fmt: skip


def _registered(dep: Deployment, say: Any) -> None:
    version = _wait(dep)
    if version is not None:
        say(f"5. registered in MLflow as {version}; the deployment now serves it "
            f"(revision {dep.revision})")  # fmt: skip
    else:
        say("5. not registered: install the registry with pip install 'nstarx-jupyter[mlflow]'")


def _wait(dep: Deployment) -> str | None:
    if dep.registration is None:
        return None
    try:
        return dep.registration.result(timeout=120).uri
    except MissingExtraError:
        return None
    except NstarxError as exc:
        return f"(registration failed: {exc.message})"
