"""Which model store a fitted model goes to, and which stores are refused before any upload."""

from __future__ import annotations

import pytest

from nstarx_jupyter.deployment.uploads import STORE_VARIABLE, model_store
from nstarx_jupyter.errors import InvalidInputError


def test_the_store_named_wins_over_the_environment_and_none_means_none() -> None:
    env = {STORE_VARIABLE: "s3://team/models/"}
    assert model_store(None, env) == "s3://team/models"
    assert model_store("s3://mine/x", env) == "s3://mine/x"
    assert model_store(None, {}) is None


@pytest.mark.parametrize("store", ["gs://bucket/models", "pvc://claim/models", "/srv/models"])
def test_a_store_nstarx_cannot_upload_to_is_refused_with_what_to_do(store: str) -> None:
    with pytest.raises(InvalidInputError, match="storage_uri=") as caught:
        model_store(store, {})
    assert store in caught.value.message


def test_a_store_without_a_bucket_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="names no bucket"):
        model_store("s3:///models", {})
