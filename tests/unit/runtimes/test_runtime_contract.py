"""The contract every runtime keeps, checked on small real models trained in this session."""

from __future__ import annotations

import gc
import weakref
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from nstarx_jupyter.errors import InvalidInputError, MissingExtraError, ModelLoadError, require
from nstarx_jupyter.protocol.datatypes import datatype_of
from nstarx_jupyter.protocol.signature import bind_inputs
from nstarx_jupyter.runtimes import create_runtime, infer_runtime
from tests.unit.runtimes.cases import BUILDERS, ROWS, Case, save_torchscript, torch_mlp

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nstarx_jupyter.runtimes.base import Runtime


TENSORFLOW = pytest.mark.xdist_group("tensorflow")
"""`make test-unit` runs the TensorFlow cases in one worker: only it imports TensorFlow (2-3 CPU s)
and builds them."""


@pytest.fixture(
    scope="session",
    params=[
        pytest.param(name, marks=TENSORFLOW)
        if name in ("tensorflow-savedmodel", "keras-file")
        else name
        for name in BUILDERS
    ],
)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    return BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


@pytest.fixture
def runtime(case: Case) -> Iterator[Runtime]:
    runtime = create_runtime(case.path, None if case.path else case.runtime, case.options)
    runtime.load()
    yield runtime
    runtime.unload()


def test_runtime_is_inferred_from_the_artifact(case: Case) -> None:
    if case.path is None:  # a custom runtime is named by its import path
        runtime = create_runtime(None, case.runtime, case.options)
        assert f"{type(runtime).__module__}.{type(runtime).__name__}" == case.runtime
    else:
        assert infer_runtime(case.path) == case.runtime
        assert type(create_runtime(case.path)).runtime_name == case.runtime


def test_metadata_is_derived_from_the_model(case: Case, runtime: Runtime) -> None:
    signature = runtime.metadata()
    assert runtime.ready
    assert signature.inputs == case.inputs
    assert signature.outputs == case.outputs
    assert signature.default_outputs == case.default_outputs
    assert signature.class_labels == case.class_labels
    assert signature.feature_names == case.feature_names


@pytest.mark.parametrize("n_rows", [1, ROWS])
def test_predict_matches_the_framework(case: Case, runtime: Runtime, n_rows: int) -> None:
    signature = runtime.metadata()
    x = {name: array[:n_rows] for name, array in case.x.items()}
    got = runtime.predict(bind_inputs(signature, x), signature.output_names())
    expected = case.expected(x)
    assert set(got) == set(signature.output_names())
    for out in signature.outputs:
        value = got[out.name]
        assert datatype_of(value) == out.datatype, out.name
        assert value.shape[0] == n_rows, out.name
        assert len(value.shape) == len(out.shape), out.name
        assert all(d in (-1, v) for d, v in zip(out.shape, value.shape, strict=True)), out.name
        np.testing.assert_allclose(value, expected[out.name], rtol=1e-5, atol=1e-6)


def test_predict_answers_the_default_outputs(case: Case, runtime: Runtime) -> None:
    signature = runtime.metadata()
    got = runtime.predict(bind_inputs(signature, case.x))
    assert tuple(got) == case.default_outputs


def test_predict_refuses_an_unknown_output(case: Case, runtime: Runtime) -> None:
    x = bind_inputs(runtime.metadata(), case.x)
    with pytest.raises(InvalidInputError, match="no-such-output"):
        runtime.predict(x, ["no-such-output"])


def test_predict_translates_a_rejected_input(case: Case, runtime: Runtime) -> None:
    if case.runtime.startswith("tests."):
        pytest.skip("the echo runtime accepts any array")
    narrow = {
        name: array[:, :-1] for name, array in bind_inputs(runtime.metadata(), case.x).items()
    }
    with pytest.raises(InvalidInputError, match="the model rejected the input"):
        runtime.predict(narrow)


def test_unload_frees_the_model(case: Case) -> None:
    runtime = create_runtime(case.path, None if case.path else case.runtime, case.options)
    runtime.load()
    held = weakref.ref(getattr(runtime, case.held))
    runtime.unload()
    gc.collect()
    assert not runtime.ready
    assert held() is None


def write_foreign_files(tmp: Path) -> Iterator[Path]:
    (tmp / "config.json").write_text('{"name": "not a model", "learner": "no"}')
    yield tmp / "config.json"
    (tmp / "notes.txt").write_text("tree\nnot a LightGBM model\n")
    yield tmp / "notes.txt"
    with zipfile.ZipFile(tmp / "weights.pt", "w") as archive:  # a torch.save'd state_dict
        archive.writestr("weights/data.pkl", b"")
        archive.writestr("weights/version", b"3")
    yield tmp / "weights.pt"
    (tmp / "empty").mkdir()
    yield tmp / "empty"


def test_no_runtime_claims_a_foreign_file(tmp_path: Path) -> None:
    for path in write_foreign_files(tmp_path):
        with pytest.raises(ModelLoadError, match="cannot tell which framework"):
            infer_runtime(path)


def test_require_names_the_extra_to_install() -> None:
    with pytest.raises(MissingExtraError) as raised:
        require("nstarx_no_such_framework", "torch")
    assert str(raised.value) == (
        "nstarx_no_such_framework is not installed; "
        "install it with: pip install 'nstarx-jupyter[torch]'"
    )


def test_torchscript_without_a_signature_is_refused(tmp_path: Path) -> None:
    save_torchscript(torch_mlp(), tmp_path / "bare.pt")
    runtime = create_runtime(tmp_path / "bare.pt")
    with pytest.raises(ModelLoadError, match="example_input"):
        runtime.load()


PROGRAMS = ("pytorch", "tensorflow")
"""Runtimes whose every artifact is a program: TorchScript, `torch.export`, SavedModel."""
PICKLES = (".joblib", ".pkl", ".pickle")


def test_a_runtime_says_whether_its_artifact_runs_code_and_passes_its_own_check(
    case: Case,
) -> None:
    """The trust model's two questions, asked of every runtime's own good artifact."""
    cls = type(create_runtime(case.path, None if case.path else case.runtime, case.options))
    if case.path is None:  # a custom runtime: the owner allowed it, its artifact is its own
        assert not cls.runs_code_on_load(Path("anything"))
        return
    files = [case.path, *(case.path.iterdir() if case.path.is_dir() else ())]
    runs_code = case.runtime in PROGRAMS or any(file.suffix in PICKLES for file in files)
    assert cls.runs_code_on_load(case.path) == runs_code
    cls.check_artifact(case.path, case.options)  # raises for what would be refused
