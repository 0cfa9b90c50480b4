"""`settings_for_uri`: a pipeline model node's URI to the settings `load_runtime` takes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.serving.loading import settings_for_uri

if TYPE_CHECKING:
    from pathlib import Path


def test_a_registry_version_is_loaded_from_the_registry() -> None:
    settings = settings_for_uri("fraud.score", "models:/fraud@champion")
    assert (settings.name, settings.storage_uri, settings.path) == (
        "fraud.score",
        "models:/fraud@champion",
        None,
    )


def test_a_file_url_is_read_percent_decoded_with_its_folder_settings(tmp_path: Path) -> None:
    folder = tmp_path / "my model"
    folder.mkdir()
    (folder / "model-settings.json").write_text(json.dumps({"runtime": "sklearn"}))
    settings = settings_for_uri("p.m", f"file://{tmp_path}/my%20model")
    assert (settings.path, settings.runtime, settings.name) == (folder, "sklearn", "p.m")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("file:///no/such/model.joblib", "model 'file:///no/such/model.joblib': no such file"),
        ("deployment:fraud", "use models:/NAME/VERSION, file:///path or deployment:NAME"),
        ("s3://bucket/fraud", "use models:/NAME/VERSION, file:///path or deployment:NAME"),
        ("models:/fraud/Production", "'models:/fraud/Production' is not a registry URI"),
    ],
)
def test_what_cannot_be_loaded_here_is_a_400(uri: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        settings_for_uri("p.m", uri)
