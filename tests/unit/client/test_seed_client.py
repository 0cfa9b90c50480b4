"""The seed's client: `from nstarx import InferenceClient`, any model URL, renamed answer fields."""

from __future__ import annotations

import pytest
import yaml

from nstarx_jupyter.client.inference import parse_endpoint
from nstarx_jupyter.deployment import DeploymentSpec
from nstarx_jupyter.deployment.kserve import to_manifests
from nstarx_jupyter.deployment.spec import from_kserve
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.notebook.snippets import python_snippet

HOST = "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("url", "version"),
    [
        (f"{HOST}/v1/models/sentiment", None),
        (f"{HOST}/v1/models/sentiment/", None),
        (f"{HOST}/v1/models/sentiment/predict", None),
        (f"{HOST}/v1/models/sentiment:predict", None),
        (f"{HOST}/v1/models/sentiment/versions/3/predict", "3"),
        (f"{HOST}/v2/models/sentiment", None),
        (f"{HOST}/v2/models/sentiment/infer", None),
        (f"{HOST}/v2/models/sentiment/versions/2/infer", "2"),
        (f"{HOST}/sentiment", None),
    ],
)
def test_the_client_takes_every_url_the_product_prints(url: str, version: str | None) -> None:
    assert parse_endpoint(url) == (HOST, "sentiment", version)


def test_a_proxy_prefix_is_kept_and_urls_without_a_model_are_refused() -> None:
    assert parse_endpoint("https://gw.example/ml/v1/models/fraud/predict") == (
        "https://gw.example/ml",
        "fraud",
        None,
    )
    for url in (f"{HOST}/predict", f"{HOST}/v2", HOST, "ftp://h/v1/models/a", f"{HOST}/a/b"):
        with pytest.raises(InvalidInputError, match="should look like"):
            parse_endpoint(url)


def test_output_names_are_validated_and_round_trip_through_kserve() -> None:
    names = {"prediction": "sentiment", "probability": "confidence"}
    spec = DeploymentSpec.build(name="sentiment", storage_uri="s3://m/s/1", output_names=names)
    docs = to_manifests(spec)
    assert from_kserve(yaml.safe_load(yaml.safe_dump(docs[-1]))).output_names == names
    for bad, word in (
        ({"prediction": ""}, "non-empty"),
        ({"prediction": "a", "confidence": "a"}, "same name"),
        ({"probability": "p", "confidence": "c"}, "same field"),
    ):
        with pytest.raises(InvalidInputError, match=word):
            DeploymentSpec.build(name="s", storage_uri="s3://m/s/1", output_names=bad)


def test_the_python_snippet_reads_the_renamed_fields() -> None:
    text = python_snippet(
        f"{HOST}/v1/models/sentiment",
        {"text": "hi"},
        "k",
        auth=True,
        output_names={"prediction": "sentiment", "probability": "confidence"},
    )
    assert text.endswith("print(result['sentiment'], result['confidence'])")


def test_the_cli_takes_output_names_as_field_equals_name() -> None:
    from nstarx_jupyter.cli.parser import build_parser
    from nstarx_jupyter.deployment.commands import _renames

    args = build_parser().parse_args(
        ["deploy", "sentiment", "m.skops", "--output-name", "prediction=sentiment",
         "--output-name", "probability=confidence"]
    )  # fmt: skip
    assert _renames(args.output_name) == {"prediction": "sentiment", "probability": "confidence"}
    with pytest.raises(InvalidInputError, match="FIELD=NAME"):
        _renames(["prediction"])
