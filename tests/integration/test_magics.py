"""`%load_ext nstarx_jupyter` in a real IPython shell, against a real local server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from nstarx_jupyter.deployment.local import LocalBackend
from nstarx_jupyter.notebook.api import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-backend")]


@pytest.fixture
def shell(nstarx_home: Path) -> Iterator[InteractiveShell]:
    made = InteractiveShell.instance()
    made.run_line_magic("load_ext", "nstarx_jupyter")
    yield made
    LocalBackend().stop()
    InteractiveShell.clear_instance()


def test_deploy_predict_and_status_from_magics(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = """
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
x, y = load_iris(return_X_y=True, as_frame=True)
LogisticRegression(max_iter=500).fit(x, y)
"""
    deployed = shell.run_cell_magic("deploy", "iris --container-concurrency 4", cell)  # type: ignore[no-untyped-call]
    assert "LogisticRegression" not in capsys.readouterr().out  # the card is the one output
    assert isinstance(deployed, Deployment)
    # No input_example: the card's form starts from the training data's means, not zeros.
    example = deployed.example()
    assert example is not None
    means = shell.user_ns["x"].mean()
    assert example == pytest.approx({str(k): float(v) for k, v in means.items()})
    assert deployed.status == "Ready"
    assert deployed.spec.container_concurrency == 4
    record = '{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, ' \
        '"petal width (cm)": 0.2}'  # fmt: skip
    out = shell.run_line_magic("predict", f"iris {record}")
    assert out["prediction"] == 0
    shell.user_ns["row"] = shell.user_ns["x"].iloc[:2]
    rows = shell.run_line_magic("predict", "iris row")
    assert len(rows) == 2
    shell.run_line_magic("nstarx", "status")
    printed = capsys.readouterr().out
    assert "iris" in printed
    assert "Ready" in printed
    assert deployed.registration is not None
    deployed.registration.result(timeout=120)
    deployed.close()


def test_user_mistakes_are_one_line_not_tracebacks(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    for cell in (
        '%predict nope {"a": 1}',
        "%predict iris not_a_variable",
        "%%deploy Bad_Name\nfrom sklearn.dummy import DummyClassifier\n"
        "DummyClassifier().fit([[0]], [0])",
        "%%deploy iris\nx = 1",
        "%%deploy\n1",
        "%nstarx launch",
    ):
        result = shell.run_cell(cell)  # type: ignore[no-untyped-call]
        assert not result.success, cell
        err = capsys.readouterr()
        text = err.out + err.err
        assert "UsageError" in text, (cell, text)
        assert "Traceback" not in text, (cell, text)
