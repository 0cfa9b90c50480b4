"""Generated files: stale ones are written whole, or named by `--check` without being touched."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstarx_jupyter.generated_files import generator_main, sync

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_check_names_the_stale_files_and_writing_makes_them_fresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh, stale, missing = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "new" / "c.json"
    fresh.write_text("A\n")
    stale.write_text("old\n")
    texts = {fresh: "A\n", stale: "B\n", missing: "C\n"}
    assert sync(texts, check=True, command="some.module") == 1
    error = capsys.readouterr().err
    assert f"{stale}, {missing} stale: run python -m some.module" in error
    assert str(fresh) not in error
    assert stale.read_text() == "old\n"  # a check changes nothing
    assert not missing.exists()
    assert sync(texts, check=False, command="some.module") == 0
    assert {path: path.read_text() for path in texts} == texts
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []
    assert sync(texts, check=True, command="some.module") == 0


def test_the_command_line_takes_the_option_and_check(tmp_path: Path) -> None:
    def texts(folder: Path) -> dict[Path, str]:
        return {folder / "x.json": "{}\n"}

    def run(*argv: str) -> int:
        return generator_main(list(argv), doc="A generator.", command="g", option="--folder",
                              default=tmp_path, texts=texts)  # fmt: skip

    assert run("--folder", str(tmp_path), "--check") == 1
    assert run("--folder", str(tmp_path)) == 0
    assert (tmp_path / "x.json").read_text() == "{}\n"
    assert run("--check") == 0
