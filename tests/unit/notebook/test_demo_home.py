"""`nstarx demo` keeps to its own home unless it is given one (issue 22: it registered `iris`
over the quickstart's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstarx_jupyter.cli.demo import DEMO_HOME_ENV, demo_home

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_the_demo_home_is_asked_for_or_apart_from_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSTARX_HOME", str(tmp_path / "mine"))
    monkeypatch.delenv(DEMO_HOME_ENV, raising=False)
    assert demo_home() == (tmp_path / "mine" / "demo").resolve()
    monkeypatch.setenv(DEMO_HOME_ENV, str(tmp_path / "from-env"))
    assert demo_home() == (tmp_path / "from-env").resolve()
    assert demo_home(tmp_path / "mine") == (tmp_path / "mine").resolve()  # --home wins
