"""Shipping a notebook's components: which are shipped, what the payload holds, what is refused."""

from __future__ import annotations

import base64
import hashlib
import pickle
from typing import Any, ClassVar

import pytest

from nstarx_jupyter.errors import ConflictError, InvalidInputError
from nstarx_jupyter.notebook.pipeline import Pipeline
from nstarx_jupyter.pipelines import Batch, Component, component_class, register_component
from nstarx_jupyter.pipelines.component import is_packaged
from nstarx_jupyter.pipelines.shipping import (
    custom_components,
    pack_components,
    unpack_components,
)


@pytest.fixture(autouse=True)
def _library_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's registrations go with it (the library is process-wide)."""
    from nstarx_jupyter.pipelines import component, palette

    palette.components()  # the built-ins and plug-ins, loaded once for every test
    monkeypatch.setattr(component, "_LIBRARY", dict(component._LIBRARY))


def _made_in_a_cell(name: str = "double-it") -> type[Component]:
    class Double(Component):
        kind: ClassVar[Any] = "input"

        def process(self, batch: Batch) -> Batch:
            return batch.replace([{**row, "x": row["x"] * 2} for row in batch.rows])

    Double.name = name
    Double.__module__ = "__main__"
    return register_component(Double, replace=True)


def _pipeline(component: str) -> Pipeline:
    pipe = Pipeline(name="shipped")
    pipe.add(component, "first")
    pipe.add("fields", "out", fields={"x": "x"})
    pipe.chain("first", "out")
    return pipe


def test_only_components_the_server_cannot_know_are_shipped() -> None:
    cls = _made_in_a_cell()
    assert not is_packaged(cls)
    assert is_packaged(component_class("fields"))
    assert custom_components(_pipeline("double-it").spec) == [cls]
    assert custom_components(_pipeline("impute").spec) == []


def test_a_packed_component_unpacks_to_a_working_class_with_its_source() -> None:
    (packed,) = pack_components([_made_in_a_cell()])
    data = base64.b64decode(packed["pickle"])
    assert packed["sha256"] == hashlib.sha256(data).hexdigest()
    assert "def process" in packed["source"]
    (cls,) = unpack_components([packed])
    assert component_class("double-it") is cls
    assert _pipeline("double-it").predict({"x": 2}) == {"x": 4}


def test_an_altered_or_foreign_payload_is_refused_before_it_is_unpickled() -> None:
    (packed,) = pack_components([_made_in_a_cell()])
    altered = {**packed, "pickle": base64.b64encode(b"\x80\x04K\x01.").decode()}
    with pytest.raises(InvalidInputError, match="sha256"):
        unpack_components([altered])
    with pytest.raises(InvalidInputError, match="list"):
        unpack_components({"name": "x"})
    data = pickle.dumps(1)
    number = {"name": "double-it", "pickle": base64.b64encode(data).decode(),
              "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip
    with pytest.raises(InvalidInputError, match="not a Component"):
        unpack_components([number])


def test_a_shipped_class_never_replaces_a_built_in_component() -> None:
    (packed,) = pack_components([_made_in_a_cell("impute-cell")])
    with pytest.raises(ConflictError, match="rename"):
        unpack_components([{**packed, "name": "impute"}])


def test_kserve_refuses_a_pipeline_with_a_notebook_component_saying_what_to_do() -> None:
    _made_in_a_cell()
    with pytest.raises(InvalidInputError, match="entry point"):
        _pipeline("double-it").to_kserve()
