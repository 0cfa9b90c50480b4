"""Components defined in a notebook deploy with their pipeline: shipped as trusted code by the
server's owner (audited, kept over a restart), refused for a key with only `manage` scope and
refused before deploying when the notebook says not to ship them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from nstarx_jupyter import deploy
from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.notebook.pipeline import Pipeline
from nstarx_jupyter.pipelines import Batch, Component, ComponentConfig, register_component
from nstarx_jupyter.pipelines.palette import component_class
from tests.conftest import IRIS_FEATURES
from tests.integration.server import ServerProcess, start_server

pytestmark = pytest.mark.integration
ROW = dict(zip(IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))
SPECIES = ("setosa", "versicolor", "virginica")


@pytest.fixture(autouse=True)
def _library_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's registrations go with it (the library is process-wide)."""
    from nstarx_jupyter.pipelines import component, palette

    palette.components()  # the built-ins and plug-ins, loaded once for every test
    monkeypatch.setattr(component, "_LIBRARY", dict(component._LIBRARY))


def _label(prediction: Any, prefix: str) -> str:
    """A helper of the notebook's, used by its component (it ships along, by value)."""
    return f"{prefix}{SPECIES[int(prediction)]}"


def _notebook_component() -> type[Component]:
    """A post-processor as a notebook defines one: a class made in a cell, not importable."""

    class NameConfig(ComponentConfig):
        prefix: str = ""

    class NameSpecies(Component):
        kind: ClassVar[Any] = "postprocess"
        name: ClassVar[str] = "name-species"
        Config: ClassVar[type[ComponentConfig]] = NameConfig

        def process(self, batch: Batch) -> Batch:
            prefix = getattr(self.config, "prefix", "")
            return batch.replace([{**row, "species": _label(row["prediction"], prefix),
                                   "sure": math.isclose(row["confidence"], 1.0, abs_tol=0.2)}
                                  for row in batch.rows])  # fmt: skip

    NameSpecies.__module__ = "__main__"  # as a cell's class is
    return register_component(NameSpecies, replace=True)


def _typed_notebook_component() -> type[Component[Any]]:
    """The newer way: the config model as the type parameter (sets `Config`, types
    `self.config`); the server rebuilds the class from its pickle in another process."""

    class UnsureConfig(ComponentConfig):
        below: float = 1.0

    class FlagUnsure(Component[UnsureConfig]):
        kind: ClassVar[Any] = "postprocess"
        name: ClassVar[str] = "flag-unsure"

        def process(self, batch: Batch) -> Batch:
            below = self.config.below
            return batch.replace([{**row, "unsure": row["confidence"] < below}
                                  for row in batch.rows])  # fmt: skip

    FlagUnsure.__module__ = "__main__"
    return register_component(FlagUnsure, replace=True)


@pytest.fixture
def server(nstarx_home: Path) -> Iterator[tuple[ServerProcess, LocalBackend]]:
    state_dir = nstarx_home / "server"
    process = start_server("--state-dir", str(state_dir), auth=True)
    yield process, LocalBackend(state_dir, timeout_s=60)
    process.stop()


def _pipeline(name: str) -> Pipeline:
    pipe = Pipeline(name=name)
    pipe.add("model", "clf", model="deployment:iris")
    pipe.add("name-species", "named", prefix="iris-")
    pipe.add("fields", "out", fields={"species": "species", "sure": "sure"})
    pipe.chain("clf", "named", "out")
    return pipe


def _audit(process: ServerProcess, backend: LocalBackend, action: str) -> list[dict[str, Any]]:
    token = backend.ensure_server().token
    answer = httpx.get(f"{process.url}/nstarx/v1/audit", params={"action": action},
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    records: list[dict[str, Any]] = answer.json()
    return records


def test_a_notebook_component_ships_with_its_pipeline_and_survives_a_restart(
    nstarx_home: Path, named_iris: Path
) -> None:
    _notebook_component()
    state_dir = nstarx_home / "server"
    process = start_server("--state-dir", str(state_dir), auth=True)
    backend = LocalBackend(state_dir, timeout_s=60)
    try:
        deploy(named_iris, "iris", backend=backend)
        pipe = _pipeline("named-flowers")
        local = pipe.predict(ROW)  # the kernel's run
        assert local == {"species": "iris-setosa", "sure": True}
        deployed = pipe.deploy(backend=backend)
        assert deployed.predict(ROW) == local
        trusted = _audit(process, backend, "pipeline.trusted")
        assert [r["model"] for r in trusted] == ["named-flowers"]
        assert trusted[0]["key"] == "admin"
        assert trusted[0]["version"].startswith("name-species:")  # the payload's digest
    finally:
        process.stop()
    again = start_server("--state-dir", str(state_dir), auth=True)
    try:  # the code the owner vouched for is kept with the pipeline and loads again
        answer = httpx.post(f"{again.url}/v1/models/named-flowers/predict", json=ROW,
                            headers={"Authorization": f"Bearer {deployed.api_key}"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json() == local
    finally:
        again.stop()


def test_a_manage_key_cannot_ship_code_and_hears_what_to_do_instead(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    process, backend = server
    component = _notebook_component()
    deploy(named_iris, "iris", backend=backend)
    key = backend.create_key("pipelines", ["manage:*"]).key
    headers = {"Authorization": f"Bearer {key}"}
    from nstarx_jupyter.pipelines.shipping import pack_components

    body = {**_pipeline("by-key").spec.model_dump(mode="json"),
            "components": pack_components([component])}  # fmt: skip
    url = f"{process.url}/nstarx/v1/pipelines/by-key"
    for sent in (body, {**body, "trusted": True}):
        refused = httpx.put(url, json=sent, headers=headers)
        assert refused.status_code == 403, refused.text
        assert "entry point" in refused.json()["error"]
    plain = {k: v for k, v in body.items() if k != "components"}
    unknown = httpx.put(url, json=plain, headers=headers)  # a server that never saw the class
    assert unknown.status_code == 400, unknown.text
    assert "Pipeline.deploy()" in unknown.json()["error"]
    assert httpx.get(url, headers=headers).status_code == 404  # nothing was deployed
    assert _audit(process, backend, "pipeline.trusted") == []


def test_not_shipping_is_refused_in_the_notebook_before_anything_is_deployed(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    _, backend = server
    _notebook_component()
    deploy(named_iris, "iris", backend=backend)
    with pytest.raises(InvalidInputError, match="entry point") as refused:
        _pipeline("not-shipped").deploy(backend=backend, ship_components=False)
    assert "name-species" in refused.value.message
    assert backend.pipelines() == []
    assert component_class("name-species").name == "name-species"  # still usable in the kernel


def test_a_notebook_component_typed_by_its_config_ships_with_that_config(
    server: tuple[ServerProcess, LocalBackend], named_iris: Path
) -> None:
    _, backend = server
    _typed_notebook_component()
    deploy(named_iris, "iris", backend=backend)
    pipe = Pipeline(name="unsure-flowers")
    pipe.add("model", "clf", model="deployment:iris")
    pipe.add("flag-unsure", "flag", below=2.0)  # a field the base ComponentConfig would refuse
    pipe.add("fields", "out", fields={"unsure": "unsure"})
    pipe.chain("clf", "flag", "out")
    local = pipe.predict(ROW)
    assert local == {"unsure": True}  # below 2.0: every confidence is
    assert pipe.deploy(backend=backend).predict(ROW) == local
