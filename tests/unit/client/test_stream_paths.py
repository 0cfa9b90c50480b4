"""The stream's path, message decoding and the client's URL and options, without a server."""

from __future__ import annotations

import pytest

from nstarx_jupyter.client import InferenceClient
from nstarx_jupyter.client.stream import check_options
from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.serving.stream import records_decoder, stream_name


def test_only_a_model_name_then_stream_is_a_stream_path() -> None:
    assert stream_name("/v2/models/iris/stream") == "iris"
    for path in ("/v2/models//stream", "/v2/models/iris", "/v1/models/iris/stream",
                 "/v2/models/iris/versions/1/stream", "/v2/models/iris/infer"):  # fmt: skip
        assert stream_name(path) is None


def test_messages_decode_like_the_product_endpoint() -> None:
    _, single = records_decoder({"a": 1.0})
    assert single
    _, single = records_decoder([{"a": 1.0}, {"a": 2.0}])
    assert not single
    _, single = records_decoder({"instances": [[1.0, 2.0]]})
    assert not single
    with pytest.raises(InvalidInputError):
        records_decoder([1, 2])


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://127.0.0.1:8080/v1/models/iris", "ws://127.0.0.1:8080/v2/models/iris/stream"),
        ("https://h.example/x/v1/models/fraud/", "wss://h.example/x/v2/models/fraud/stream"),
    ],
)
def test_the_client_streams_to_its_models_stream_path(endpoint: str, url: str) -> None:
    from nstarx_jupyter.client.stream import stream_url

    with InferenceClient(endpoint) as client:
        assert stream_url(client._core) == url


def test_bad_stream_options_are_refused_before_connecting() -> None:
    with pytest.raises(InvalidInputError, match="window"):
        check_options(0, "raise")
    with pytest.raises(InvalidInputError, match="errors"):
        check_options(8, "ignore")
    client = InferenceClient("http://127.0.0.1:1/v1/models/iris")
    with client, pytest.raises(InvalidInputError):
        client.stream([], window=0)
