"""Repository hygiene: what Jupyter creates while you work stays out of `git status`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_jupyter_scratch_files_are_ignored() -> None:
    scratch = ["notebooks/.ipynb_checkpoints/01-quickstart-checkpoint.ipynb",
               "notebooks/Untitled.ipynb", "notebooks/Untitled3.ipynb",
               "notebooks/untitled.pipeline.json", "notebooks/untitled2.pipeline.json"]  # fmt: skip
    kept = ["notebooks/01-quickstart.ipynb", "notebooks/fraud.pipeline.json"]
    if shutil.which("git") is not None and (ROOT / ".git").exists():
        command = ["git", "-C", str(ROOT), "check-ignore", "--no-index", *scratch, *kept]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert done.stdout.split() == scratch
    else:  # an unpacked archive: the patterns themselves
        lines = (ROOT / ".gitignore").read_text().splitlines()
        assert {".ipynb_checkpoints/", "Untitled*.ipynb", "untitled*.pipeline.json"} <= set(lines)
