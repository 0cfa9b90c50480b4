"""The trust model over the control API: hostile artifacts, allowed folders and runtimes.

Every artifact here is made by the test and tries to create a marker file when it is loaded
(or extracted); each is sent over the control API of an in-process server with a `manage:` key
and with the admin token without `trusted: true`: all must be refused and no marker may exist.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import tarfile
import zipfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import joblib
import pytest

from nstarx_jupyter.security.audit_log import read_audit
from nstarx_jupyter.security.guard import admin_token
from nstarx_jupyter.security.home import audit_dir, key_store, security_dir
from nstarx_jupyter.serving.app import ServingConfig, create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sklearn.linear_model import LogisticRegression

CONTROL = "/nstarx/v1/deployments"


class _OpensMarker:
    """Pickles as a call that creates `marker` when unpickled: code running on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def _pickle(marker: Path) -> bytes:
    return pickle.dumps(_OpensMarker(marker))


def _joblib(value: Any, path: Path, **kwargs: Any) -> None:
    joblib.dump(value, path, **kwargs)


def _onnx_model(tensor: Any) -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y],
                              [tensor])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())


def _onnx_external(folder: Path, secret: Path) -> Path:
    from onnx import TensorProto

    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    tensor.data_location = TensorProto.EXTERNAL
    relative = os.path.relpath(secret, folder)
    for key, value in {"location": relative, "offset": "0", "length": "16"}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(_onnx_model(tensor))
    return folder


def _onnx_oversize(path: Path) -> Path:
    from onnx import TensorProto

    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 28, 4])  # 4 GiB
    tensor.raw_data = b"\0" * 16
    path.write_bytes(_onnx_model(tensor))
    return path


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _tar_dotdot(path: Path, marker: Path) -> Path:
    info = tarfile.TarInfo("../" * 30 + str(marker).lstrip("/"))
    info.size = 1
    return _tar(path, [(info, b"x")])


def _tar_symlink(path: Path, marker: Path) -> Path:
    link = tarfile.TarInfo("model")
    link.type, link.linkname = tarfile.SYMTYPE, str(marker.parent)
    payload = tarfile.TarInfo(f"model/{marker.name}")
    payload.size = 1
    return _tar(path, [(link, None), (payload, b"x")])


def _mlflow_folder(folder: Path, mlmodel: str, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text(mlmodel)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _keras_lambda(path: Path, marker: Path) -> Path | None:
    """A `.keras` file whose Lambda layer creates the marker when the model is rebuilt."""
    try:
        import keras  # type: ignore[import-untyped]
    except ImportError:
        return None
    command = f"open({str(marker)!r}, 'w').close()"

    def opens(x: Any) -> Any:
        exec(command)  # noqa: S102 - the hostile payload itself
        return x

    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(opens)])
    model.save(path)
    return path


def _saved_model(folder: Path, marker: Path) -> Path | None:
    """A SavedModel whose signature writes the marker when it runs."""
    try:
        import tensorflow as tf
    except ImportError:
        return None

    class Writes(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])  # type: ignore[untyped-decorator]
        def serve(self, x: Any) -> Any:
            tf.io.write_file(str(marker), "x")
            return {"y": x}

    module = Writes()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def hostile_corpus(folder: Path, markers: Path) -> dict[str, dict[str, Any]]:
    """Each hostile artifact as the deployment fields that name it; markers go in `markers`."""
    import cloudpickle  # type: ignore[import-untyped]
    import skops.io
    import torch
    from sklearn.preprocessing import FunctionTransformer

    folder.mkdir(parents=True)
    markers.mkdir(parents=True)

    def marker(name: str) -> Path:
        return markers / name

    corpus: dict[str, dict[str, Any]] = {}
    (folder / "reduce.pkl").write_bytes(_pickle(marker("reduce")))
    corpus["reduce"] = {"storage_uri": str(folder / "reduce.pkl")}
    _joblib({"steps": [("scale", [_OpensMarker(marker("nested"))])]}, folder / "nested.joblib")
    corpus["nested"] = {"storage_uri": str(folder / "nested.joblib")}
    _joblib(_OpensMarker(marker("gzip")), folder / "gzip.joblib", compress=("gzip", 3))
    corpus["gzip"] = {"storage_uri": str(folder / "gzip.joblib")}
    (folder / "cloud.pkl").write_bytes(cloudpickle.dumps(_OpensMarker(marker("cloud"))))
    corpus["cloud"] = {"storage_uri": str(folder / "cloud.pkl")}
    with zipfile.ZipFile(folder / "zipped.zip", "w") as archive:
        archive.writestr("model.pkl", _pickle(marker("zip")))
    corpus["zip"] = {"storage_uri": str(folder / "zipped.zip")}
    (folder / "disguised.skops").write_bytes(_pickle(marker("disguised")))
    corpus["disguised"] = {"storage_uri": str(folder / "disguised.skops")}
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "extra": _OpensMarker(marker("torch"))}, buffer)
    (folder / "state.pt").write_bytes(buffer.getvalue())
    corpus["torch"] = {"storage_uri": str(folder / "state.pt"), "runtime": "pytorch"}
    corpus["torch-inferred"] = {"storage_uri": str(folder / "state.pt")}
    skops.io.dump(FunctionTransformer(func=os.system), folder / "untrusted.skops")
    corpus["skops"] = {"storage_uri": str(folder / "untrusted.skops")}
    secret = folder.parent / "secret.bin"
    secret.write_bytes(b"\0" * 16)
    corpus["onnx-external"] = {"storage_uri": str(_onnx_external(folder / "onnx-ext", secret))}
    corpus["onnx-oversize"] = {"storage_uri": str(_onnx_oversize(folder / "oversize.onnx"))}
    corpus["tar-dotdot"] = {"storage_uri": str(_tar_dotdot(folder / "dotdot.tar", marker("tar")))}
    corpus["tar-symlink"] = {
        "storage_uri": str(_tar_symlink(folder / "symlink.tar", marker("tar-link")))}  # fmt: skip
    flavor = "flavors:\n  sklearn:\n    pickled_model: model.pkl\n"
    corpus["mlflow-pickle"] = {"storage_uri": str(_mlflow_folder(
        folder / "mlflow-pickle", flavor, {"model.pkl": _pickle(marker("mlflow"))}))}  # fmt: skip
    yaml_tag = f"flavors: !!python/object/apply:builtins.open ['{marker('yaml')}', 'w']\n"
    corpus["yaml-mlmodel"] = {"storage_uri": str(_mlflow_folder(folder / "yaml", yaml_tag, {}))}
    settings = folder / "settings-runtime"
    settings.mkdir()
    (settings / "model.onnx").write_bytes(b"")
    (settings / "model-settings.json").write_text(json.dumps({"runtime": "this.X"}))
    corpus["settings-runtime"] = {"storage_uri": str(settings)}
    corpus["runtime"] = {"storage_uri": str(folder / "oversize.onnx"), "runtime": "this.X"}
    vouches = folder / "settings-trusted"  # a file does not vouch for itself
    vouches.mkdir()
    _joblib(_OpensMarker(marker("settings-trusted")), vouches / "model.joblib")
    (vouches / "model-settings.json").write_text(json.dumps({"trusted": True}))
    corpus["settings-trusted"] = {"storage_uri": str(vouches)}
    keras_file = _keras_lambda(folder / "lambda.keras", marker("keras"))
    if keras_file is not None:
        corpus["keras-lambda"] = {"storage_uri": str(keras_file)}
        corpus["keras-lambda-runtime"] = {"storage_uri": str(keras_file),
                                          "runtime": "tensorflow"}  # fmt: skip
    saved = _saved_model(folder / "savedmodel", marker("savedmodel"))
    if saved is not None:
        corpus["savedmodel"] = {"storage_uri": str(saved)}
    for made in markers.iterdir():  # the Lambda runs once when the model is saved
        made.unlink()
    return corpus


@pytest.fixture
async def control(nstarx_home: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process server with a control API and its audit log."""
    app = create_app([], ServingConfig(state_dir=nstarx_home / "server"))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.lifespan())
        transport = httpx.ASGITransport(app=app)
        yield await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=120)
        )


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token(security_dir())}"}


def _manage(name: str = "*") -> dict[str, str]:
    _, secret = key_store().create("deployer", [f"manage:{name}", f"predict:{name}"])
    return {"Authorization": f"Bearer {secret}"}


def _name(label: str) -> str:
    return "h-" + "".join(c if c.isalnum() else "-" for c in label.lower())


@pytest.mark.xdist_group("tensorflow")  # Keras and TensorFlow files: one import
async def test_every_hostile_artifact_is_refused_and_runs_nothing(
    control: httpx.AsyncClient, nstarx_home: Path, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    corpus = hostile_corpus(nstarx_home / "corpus", markers)
    assert len(corpus) >= 12
    callers = {"manage key": _manage(), "admin without trusted": _admin()}
    answers: dict[tuple[str, str], int] = {}
    for label, fields in corpus.items():
        for caller, headers in callers.items():
            for replicas in (1, 0):  # refused at the PUT even when it would load on first use
                doc = {**fields, "min_replicas": replicas}
                reply = await control.put(f"{CONTROL}/{_name(label)}", json=doc, headers=headers)
                answers[label, f"{caller}, min_replicas {replicas}"] = reply.status_code
                assert reply.headers["content-type"] == "application/json", (label, reply.text)
    accepted = {case: status for case, status in answers.items() if not 400 <= status < 500}
    refused = 1 - len(accepted) / len(answers)
    assert refused == 1.0, accepted
    assert sorted(p.name for p in markers.iterdir()) == []
    assert "this" not in sys.modules  # `runtime: this.X` imported nothing


@pytest.mark.xdist_group("tensorflow")  # Keras and TensorFlow files: one import
async def test_the_corpus_is_hostile_when_the_admin_vouches_for_it(
    control: httpx.AsyncClient, nstarx_home: Path, tmp_path: Path
) -> None:
    """The control for the test above: trusted, the pickle runs (and is no model: 400)."""
    markers = tmp_path / "markers"
    corpus = hostile_corpus(nstarx_home / "corpus", markers)
    doc = {**corpus["reduce"], "trusted": True}
    reply = await control.put(f"{CONTROL}/vouched", json=doc, headers=_admin())
    assert reply.status_code == 400
    assert (markers / "reduce").exists()


async def test_a_manage_key_cannot_load_a_pickle_outside_the_allowed_folders(
    control: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The exploit of issue 17: 403 before anything is opened, one answer for a missing file."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.joblib"
    _joblib(_OpensMarker(marker), evil)
    headers = _manage("evil")
    found = await control.put(f"{CONTROL}/evil", json={"storage_uri": str(evil)}, headers=headers)
    missing = await control.put(
        f"{CONTROL}/evil", headers=headers, json={"storage_uri": str(tmp_path / "missing.joblib")}
    )
    assert found.status_code == missing.status_code == 403
    assert found.json()["error"] == missing.json()["error"].replace("missing", "evil")
    assert not marker.exists()
    admin = await control.put(f"{CONTROL}/evil", json={"storage_uri": str(evil)},
                              headers=_admin())  # fmt: skip
    assert admin.status_code == 403
    assert not marker.exists()


@pytest.mark.parametrize(
    "uri",
    [
        "{inside}/../../outside/model.joblib",
        "{link}/model.joblib",
        "file://{outside}/model.joblib",
        "~/../../{outside}/m.joblib",
    ],
)
async def test_paths_leading_outside_the_allowed_folders_are_refused(
    control: httpx.AsyncClient, nstarx_home: Path, tmp_path: Path, uri: str,
    iris_model: LogisticRegression,
) -> None:  # fmt: skip
    outside = tmp_path / "outside"
    outside.mkdir()
    joblib.dump(iris_model, outside / "model.joblib")
    inside = nstarx_home / "models"
    inside.mkdir(parents=True)
    (nstarx_home / "link").symlink_to(outside)
    text = uri.format(inside=inside, link=nstarx_home / "link", outside=outside)
    reply = await control.put(f"{CONTROL}/iris", json={"storage_uri": text}, headers=_admin())
    assert reply.status_code == 403, reply.text
    assert "not in a folder this server may load models from" in reply.json()["error"]


async def test_the_security_folder_is_out_of_reach(control: httpx.AsyncClient) -> None:
    keys = security_dir() / "keys.json"
    for vouched in ({}, {"trusted": True}):
        doc = {"storage_uri": str(keys), **vouched}
        reply = await control.put(f"{CONTROL}/keys", json=doc, headers=_admin())
        assert reply.status_code == 403


async def test_only_the_admin_may_mark_a_deployment_trusted_and_it_is_audited(
    control: httpx.AsyncClient, nstarx_home: Path, iris_model: LogisticRegression,
) -> None:  # fmt: skip
    path = nstarx_home / "models" / "iris.joblib"
    path.parent.mkdir(parents=True)
    joblib.dump(iris_model, path)
    doc = {"storage_uri": str(path), "trusted": True}
    manage = _manage("iris")
    refused = await control.put(f"{CONTROL}/iris", json=doc, headers=manage)
    assert refused.status_code == 403
    assert "only the admin may mark a model trusted" in refused.json()["error"]
    types = {"storage_uri": str(path), "options": {"trusted_types": ["posix.system"]}}
    refused = await control.put(f"{CONTROL}/iris", json=types, headers=manage)
    assert refused.status_code == 403
    untrusted = await control.put(f"{CONTROL}/iris", json={"storage_uri": str(path)},
                                  headers=_admin())  # fmt: skip
    assert untrusted.status_code == 403
    assert "runs code when it loads" in untrusted.json()["error"]
    made = await control.put(f"{CONTROL}/iris", json=doc, headers=_admin())
    assert made.status_code == 201, made.text
    assert made.json()["spec"]["trusted"] is True
    vouched = read_audit(audit_dir(), action="deployment.trusted")
    assert [(row["key"], row["model"]) for row in vouched] == [("admin", "iris")]


async def test_a_skops_model_deploys_with_a_manage_key(
    control: httpx.AsyncClient, nstarx_home: Path, iris_model: LogisticRegression,
) -> None:  # fmt: skip
    """Safe formats need no trust: skops with the types its folder lists, ONNX, boosters."""
    import skops.io

    folder = nstarx_home / "models" / "iris"
    folder.mkdir(parents=True)
    skops.io.dump(iris_model, folder / "model.skops")
    types = skops.io.get_untrusted_types(file=folder / "model.skops")
    (folder / "model-settings.json").write_text(json.dumps({"options": {"trusted_types": types},
                                                            "trusted": True}))  # fmt: skip
    made = await control.put(f"{CONTROL}/iris", json={"storage_uri": str(folder)},
                             headers=_manage("iris"))  # fmt: skip
    assert made.status_code == 201, made.text
    assert "trusted" not in made.json()["spec"]


@pytest.mark.parametrize("runtime", ["../x", "this.X", "os:system", "nstarx_jupyter..x"])
async def test_a_runtime_import_path_over_the_api_is_refused_and_audited(
    control: httpx.AsyncClient, nstarx_home: Path, runtime: str
) -> None:
    path = nstarx_home / "models" / "m.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    doc = {"storage_uri": str(path), "runtime": runtime}
    reply = await control.put(f"{CONTROL}/custom", json=doc, headers=_admin())
    assert reply.status_code == 403
    assert reply.headers["content-type"] == "application/json"
    assert "--allow-runtime" in reply.json()["error"]
    assert "this" not in sys.modules
    audited = read_audit(audit_dir(), action="deployment.put", model="custom")
    assert [row["status"] for row in audited][-1:] == [403]


async def test_an_allowed_runtime_import_path_is_accepted(nstarx_home: Path) -> None:
    from tests.support.runtimes import SlowRuntime

    allowed = f"{SlowRuntime.__module__}.{SlowRuntime.__name__}"
    config = ServingConfig(state_dir=nstarx_home / "server", allow_runtimes=(allowed,))
    app = create_app([], config)
    async with (
        app.lifespan(),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as http,
    ):
        folder = nstarx_home / "models" / "echo"
        folder.mkdir(parents=True)
        reply = await http.put(f"{CONTROL}/echo", headers=_admin(),
                               json={"storage_uri": str(folder), "runtime": allowed})  # fmt: skip
        assert reply.status_code == 201, reply.text


NEVER_MADE = "/tmp/"  # noqa: S108 - these paths are only sent, never created


@pytest.mark.parametrize("uri", [NEVER_MADE + "x" * 256, "~nosuchuser/x", "file:///" + "x" * 300,
                                 "~" + "x" * 300, NEVER_MADE + "x" * 5000, "file:///a\u0000b"],
                         ids=["long-part", "unknown-user", "long-file-uri", "long-user",
                              "long-path", "nul"])  # fmt: skip
async def test_unreadable_storage_uris_are_client_errors(
    control: httpx.AsyncClient, uri: str
) -> None:
    for vouched in ({}, {"trusted": True}):  # trusted skips the folder check, not the path's
        reply = await control.put(f"{CONTROL}/odd", json={"storage_uri": uri, **vouched},
                                  headers=_admin())  # fmt: skip
        assert 400 <= reply.status_code < 500, reply.text
        assert reply.headers["content-type"] == "application/json"


def test_deploy_stages_a_fitted_scikit_learn_model_in_a_format_that_runs_no_code(
    iris_model: LogisticRegression, iris_data: tuple[Any, Any]
) -> None:
    """A staged model needs no trust: skops, with the types it holds listed beside it."""
    import xgboost

    from nstarx_jupyter.deployment.staging import stage_model
    from nstarx_jupyter.runtimes.sklearn import SklearnRuntime
    from nstarx_jupyter.serving.settings import file_settings

    staged, trusted = stage_model(iris_model, "iris")
    assert (staged / "model.skops").is_file()
    assert not trusted
    assert not SklearnRuntime.runs_code_on_load(staged)
    runtime = SklearnRuntime(staged, options=file_settings(staged).get("options"))
    runtime.load()
    x, _ = iris_data
    assert (runtime.predict({"input-0": x[:5]})["predict"] == iris_model.predict(x[:5])).all()
    booster, vouched = stage_model(xgboost.XGBClassifier(n_estimators=2).fit(*iris_data), "xgb")
    assert booster.suffix == ".joblib"
    assert vouched  # the registry pickles these too: sent as trusted, with the admin token


def test_nstarx_apply_reads_yaml_without_python_tags(tmp_path: Path) -> None:
    from nstarx_jupyter.deployment.commands import apply_file
    from nstarx_jupyter.deployment.local import LocalBackend
    from nstarx_jupyter.errors import InvalidInputError

    marker = tmp_path / "yaml-marker"
    manifest = tmp_path / "isvc.yaml"
    manifest.write_text(f"kind: !!python/object/apply:os.mkdir ['{marker}']\n")
    with pytest.raises(InvalidInputError, match="could not determine a constructor"):
        apply_file(manifest, LocalBackend(tmp_path / "server"))
    assert not marker.exists()


async def test_a_pipeline_over_the_api_loads_no_file_that_runs_code(
    control: httpx.AsyncClient, nstarx_home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pipeline-marker"
    outside, inside = tmp_path / "evil.joblib", nstarx_home / "models" / "evil.joblib"
    inside.parent.mkdir(parents=True)
    for path in (outside, inside):
        _joblib(_OpensMarker(marker), path)
    elsewhere = tmp_path / "model.onnx"  # a safe format: only the folder check stops it
    elsewhere.write_bytes(b"")
    sneaky = f"{(nstarx_home / 'models').as_uri()}/{'%2e%2e/' * 40}{str(elsewhere).lstrip('/')}"
    for caller in (_manage("flow"), _admin()):
        for uri in (outside.as_uri(), inside.as_uri(), sneaky):
            spec = {"nodes": [{"id": "clf", "component": "model", "config": {"model": uri}},
                              {"id": "out", "component": "records"}],
                    "edges": [{"id": "e", "source": "clf", "target": "out"}]}  # fmt: skip
            reply = await control.put("/nstarx/v1/pipelines/flow", json=spec, headers=caller)
            assert reply.status_code == 403, reply.text
    assert not marker.exists()


async def test_a_pipeline_file_is_read_where_the_folder_check_looked(
    control: httpx.AsyncClient, nstarx_home: Path, tmp_path: Path
) -> None:
    """`link/..` is folded on the text for the check, so the file opened is the one checked."""
    deep = tmp_path / "outside" / "deep"
    deep.mkdir(parents=True)
    (tmp_path / "outside" / "model.onnx").write_bytes(b"")  # what the OS would find
    (nstarx_home / "link").symlink_to(deep)
    uri = f"{nstarx_home.as_uri()}/link/../model.onnx"
    spec = {"nodes": [{"id": "clf", "component": "model", "config": {"model": uri}},
                      {"id": "out", "component": "records"}],
            "edges": [{"id": "e", "source": "clf", "target": "out"}]}  # fmt: skip
    reply = await control.put("/nstarx/v1/pipelines/flow", json=spec, headers=_admin())
    assert reply.status_code == 400
    assert "no such file" in reply.json()["error"]
