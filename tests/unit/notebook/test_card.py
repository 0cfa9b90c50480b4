"""The deployment card's Python half, driven by the messages its front end sends."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("anywidget")

from nstarx_jupyter.errors import InvalidInputError, NotFoundError
from nstarx_jupyter.notebook import card as card_module
from nstarx_jupyter.notebook.card import CardSource, DeploymentCard, registry_version

URL = "http://127.0.0.1:8123/v1/models/iris"
KEY = "nsx_0123abcd_secretpart-with_underscore"
HINT = "nsx_0123abcd…"
RECORD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


class FakeDeployment:
    """A CardSource whose status and answers the test sets."""

    def __init__(self, *, api_key: str | None = KEY, auth: bool = True) -> None:
        self.name = "iris"
        self.url = URL
        self.api_key = api_key
        spec = {"storage_uri": "models:/iris/3", "auth": auth}
        self.info: dict[str, Any] = {"name": "iris", "revision": 2, "status": "Loading"}
        self.info["spec"] = spec
        self.received: list[Any] = []
        self.failure: Exception | None = None

    def describe(self) -> dict[str, Any]:
        return self.info

    def predict(self, data: Any) -> Any:
        self.received.append(data)
        if self.failure is not None:
            raise self.failure
        return {"label": 0, "proba": [0.97, 0.02, 0.01]}

    def example(self) -> dict[str, Any] | None:
        return dict(RECORD)


def send(card: DeploymentCard, message: dict[str, str]) -> None:
    """Deliver a message as the front end's `model.send` does, and wait for its work."""
    card._handle_custom_msg(message, [])
    if card._worker is not None:
        card._worker.join(timeout=10)
        assert not card._worker.is_alive()


def test_fake_satisfies_the_protocol() -> None:
    source: CardSource = FakeDeployment()
    assert source.name == "iris"


def test_card_shows_name_endpoint_status_and_example() -> None:
    card = DeploymentCard(FakeDeployment())
    assert (card.name, card.endpoint, card.status) == ("iris", URL, "Loading")
    assert json.loads(card.example) == RECORD
    assert card.key_hint == HINT
    assert repr(card) == f"DeploymentCard(iris v3, Loading, {URL})"


def test_version_is_the_registry_version_of_a_models_uri() -> None:
    assert DeploymentCard(FakeDeployment()).version == "v3"
    assert registry_version("models:/iris/12") == "12"
    assert registry_version("models:/iris@champion") is None
    assert registry_version("file:///tmp/iris") is None


def test_version_falls_back_to_the_revision() -> None:
    source = FakeDeployment()
    source.info["spec"]["storage_uri"] = "file:///tmp/iris/model.joblib"
    assert DeploymentCard(source).version == "rev 2"


def test_synced_state_holds_only_the_keys_hint_and_a_reveal_message_carries_the_key() -> None:
    card = DeploymentCard(FakeDeployment())
    synced = json.dumps(card.get_state())
    assert KEY not in synced  # nbconvert and "save widget state" write this into the .ipynb
    assert f'-H "Authorization: Bearer {HINT}"' in card.curl
    sent: list[Any] = []
    card.send = sent.append
    send(card, {"type": "reveal"})
    (secret,) = sent
    compact = json.dumps(RECORD, separators=(",", ":"))
    assert secret["type"] == "secret"
    assert secret["api_key"] == KEY
    assert secret["curl"].startswith(f"curl {URL}/predict")
    assert f'-H "Authorization: Bearer {KEY}"' in secret["curl"]
    assert '-H "Content-Type: application/json"' in secret["curl"]
    assert f"-d '{compact}'" in secret["curl"]
    assert "from nstarx_jupyter import InferenceClient" in secret["python"]
    assert f"endpoint={URL!r},\n    api_key={KEY!r},\n" in secret["python"]
    assert "    'petal_width': 0.2,\n})" in secret["python"]  # one feature a line


def test_snippets_use_a_placeholder_when_the_key_is_unknown() -> None:
    card = DeploymentCard(FakeDeployment(api_key=None))
    assert card.key_hint == ""
    assert '-H "Authorization: Bearer $NSTARX_API_KEY"' in card.curl
    assert "api_key='<YOUR_KEY>'" in card.python


def test_open_deployment_snippets_have_no_authorization() -> None:
    card = DeploymentCard(FakeDeployment(api_key=None, auth=False))
    assert card.auth is False
    assert "Authorization" not in card.curl
    assert "api_key" not in card.python
    assert f"InferenceClient(\n    endpoint={URL!r},\n)" in card.python


def test_python_snippet_is_valid_python_that_builds_the_record() -> None:
    snippet = card_module.python_snippet(URL, RECORD, KEY, auth=True)
    call = snippet.split("client.predict(", 1)[1].removesuffix(")")
    compile(snippet, "<snippet>", "exec")
    assert ast.literal_eval(call) == RECORD


def test_curl_body_escapes_single_quotes_for_the_shell() -> None:
    command = card_module.curl_snippet(URL, {"name": "O'Brien"}, None, auth=False)
    assert command.endswith("""-d '{"name":"O'\\''Brien"}'""")


def test_predict_message_sets_result_and_round_trip_time() -> None:
    source = FakeDeployment()
    card = DeploymentCard(source)
    source.info["status"] = "Ready"
    send(card, {"type": "predict", "body": json.dumps(RECORD)})
    assert source.received == [RECORD]
    assert json.loads(card.result) == {"label": 0, "proba": [0.97, 0.02, 0.01]}
    assert card.error == ""
    assert card.elapsed_ms is not None
    assert card.elapsed_ms >= 0
    assert card.busy is False
    assert card.status == "Ready"  # refreshed after the prediction


def test_bad_json_sets_a_clear_error_without_calling_the_model() -> None:
    source = FakeDeployment()
    card = DeploymentCard(source)
    send(card, {"type": "predict", "body": '{"sepal_length": 5.1,'})
    assert card.error.startswith("The request is not valid JSON: ")
    assert "line 1" in card.error
    assert "Traceback" not in card.error
    assert (card.result, card.elapsed_ms, card.busy) == ("", None, False)
    assert source.received == []


def test_a_refused_prediction_shows_the_error_message() -> None:
    source = FakeDeployment()
    source.failure = InvalidInputError("missing feature 'petal_width'")
    card = DeploymentCard(source)
    send(card, {"type": "predict", "body": "{}"})
    assert card.error == "missing feature 'petal_width'"
    assert card.result == ""
    assert card.elapsed_ms is not None
    assert card.busy is False


def test_an_unexpected_failure_is_shown_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    source = FakeDeployment()
    source.failure = RuntimeError("connection reset")
    card = DeploymentCard(source)
    send(card, {"type": "predict", "body": "{}"})
    assert card.error == "RuntimeError: connection reset"
    assert card.busy is False
    assert "deployment card iris" in caplog.text


def test_refresh_message_updates_the_status_and_reason() -> None:
    source = FakeDeployment()
    card = DeploymentCard(source)
    source.info.update(status="Failed", reason="model file is corrupt")
    send(card, {"type": "refresh"})
    assert (card.status, card.reason) == ("Failed", "model file is corrupt")


def test_refresh_picks_up_a_key_created_later() -> None:
    source = FakeDeployment(api_key=None)
    card = DeploymentCard(source)
    source.api_key = KEY
    send(card, {"type": "refresh"})
    assert card.key_hint == HINT
    assert f"Bearer {HINT}" in card.curl


def test_unknown_messages_are_ignored() -> None:
    card = DeploymentCard(FakeDeployment())
    send(card, {"type": "launch"})
    assert (card.result, card.error, card.busy) == ("", "", False)


def test_the_built_bundle_ships_in_the_package() -> None:
    static = Path(card_module.__file__).parent / "static"
    for name in ("card.js", "card.css"):
        assert (static / name).stat().st_size > 0
    assert "nstarx-card" in (static / "card.css").read_text()
    assert "nstarx-card-status" in (static / "card.js").read_text()


def test_the_cards_python_snippet_reads_the_deployments_renamed_answer_fields() -> None:
    source = FakeDeployment()
    source.info["spec"]["output_names"] = {"prediction": "species", "probability": "confidence"}
    card = DeploymentCard(source)
    assert card.python.endswith("print(result['species'], result['confidence'])")
    sent: list[Any] = []
    card.send = sent.append
    send(card, {"type": "reveal"})
    assert sent[0]["python"].endswith("print(result['species'], result['confidence'])")


class GoneDeployment(FakeDeployment):
    """A deployment that was deleted (or never was): describing it is a 404."""

    gone = False

    def describe(self) -> dict[str, Any]:
        if self.gone:
            raise NotFoundError("no deployment 'iris'")
        return self.info


def test_a_card_says_deleted_only_for_a_deployment_it_saw() -> None:
    never = GoneDeployment()
    never.gone = True
    assert DeploymentCard(never).status == "Unknown"  # a typo'd name was not deleted
    source = GoneDeployment()
    card = DeploymentCard(source)
    source.gone = True
    card_module.refresh_cards("iris")
    assert (card.status, card.reason) == ("Deleted", "the deployment 'iris' was deleted")


def test_without_an_example_the_form_starts_from_the_reference_datas_means() -> None:
    import pandas as pd

    from nstarx_jupyter.notebook.examples import first_record

    class Named:  # a model that knows its features and nothing else (not scikit-learn)
        feature_names_in_ = ("a", "b")

    model = Named()
    reference = pd.DataFrame({"a": [1.0, 3.0], "b": [10, 20]})
    assert first_record(None, model, reference) == {"a": 2.0, "b": 15.0}
    assert first_record(None, model) == {"a": 0.0, "b": 0.0}  # nothing known: zeros
    other = pd.DataFrame({"a": [1.0], "c": [2.0]})  # not the model's features
    assert first_record(None, model, other) == {"a": 0.0, "b": 0.0}
    assert first_record({"a": 5, "b": 6}, model, reference) == {"a": 5, "b": 6}
