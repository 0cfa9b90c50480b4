"""`nstarx demo`: train a small iris model, serve it, and call it the ways a user would."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.request
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import atomic_write, nstarx_home
from nstarx_jupyter.serving.server import BoundServer, announce, run_server
from nstarx_jupyter.serving.settings import SETTINGS_FILE, ModelSettings

if TYPE_CHECKING:
    from pathlib import Path

    from nstarx_jupyter.serving.app import ServingConfig

__all__ = ["FEATURES", "run_demo", "train_demo_model"]

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
"""The iris features, named as the product endpoint takes them."""

_RECORD = dict(zip(FEATURES, (5.1, 3.5, 1.4, 0.2), strict=True))


def train_demo_model(folder: Path) -> Path:
    """Train a logistic regression on iris (fixed seed) into `folder`, written atomically."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    iris = load_iris()
    labels = iris.target_names[iris.target]  # answers say "setosa", not 0
    model = LogisticRegression(max_iter=1000, random_state=0).fit(iris.data, labels)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    atomic_write(folder / "model.joblib", buffer.getvalue())
    settings = {"options": {"feature_names": list(FEATURES)}}
    atomic_write(folder / SETTINGS_FILE, json.dumps(settings))
    return folder


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(  # noqa: S310 - our own loopback server
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def _examples(base: str) -> list[tuple[str, str, dict[str, Any]]]:
    row = list(_RECORD.values())
    v2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row}]}
    return [
        ("product records", f"{base}/v1/models/iris/predict", _RECORD),
        ("KServe V1", f"{base}/v1/models/iris:predict", {"instances": [row]}),
        ("Open Inference V2", f"{base}/v2/models/iris/infer", v2),
    ]


def _call_examples(bound: BoundServer) -> None:
    announce(bound)
    for title, url, body in _examples(bound.url):
        answer = _post(url, body)
        print(f"\n# {title}\ncurl -s -X POST {url} -d '{json.dumps(body)}'")  # noqa: T201
        print(json.dumps(answer))  # noqa: T201
    print(f"\nmetrics: {bound.url}/metrics", flush=True)  # noqa: T201


def run_demo(config: ServingConfig, *, once: bool = False) -> int:
    """Serve the demo model, show example calls, and keep serving unless `once`."""
    folder = train_demo_model(nstarx_home() / "demo" / "iris")
    settings = ModelSettings(name="iris", path=folder, options={"feature_names": list(FEATURES)})

    async def on_ready(bound: BoundServer) -> bool:
        await asyncio.to_thread(_call_examples, bound)
        return once

    return run_server([settings], config, on_ready)
