"""Sinks against a real HTTP receiver on loopback and real files: batches, retries, dead letter,
drops, CloudEvents, JSONL and Parquet, the folder policy, and the KServe `logger` round trip."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from nstarx_jupyter.deployment import kserve
from nstarx_jupyter.deployment.spec import DeploymentSpec, from_kserve
from nstarx_jupyter.errors import ForbiddenError, InvalidInputError
from nstarx_jupyter.pipelines.sinks import FileSink, WebhookSink, keep_secrets
from nstarx_jupyter.serving.sinks import REQUEST_EVENT, RESPONSE_EVENT, SinkHub
from tests.support.receiver import Receiver

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

INPUTS = {"input-0": np.array([[5.1, 3.5, 1.4, 0.2]])}
OUTPUTS = {"predict": np.array([0])}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[SinkHub]:
    made = SinkHub(tmp_path / "sinks", [tmp_path / "security"])
    yield made
    made.close(timeout_s=5)


def _feed(hub: SinkHub, count: int, name: str = "iris") -> None:
    feed = hub.feeds[name]
    for i in range(count):
        feed.offer("3", "primary", f"req-{i}", time.perf_counter(), INPUTS, OUTPUTS)


def _wait(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("the condition did not hold in time")


def test_records_arrive_in_batches_with_inputs_outputs_and_who_answered(
    hub: SinkHub, receiver: Receiver
) -> None:
    hub.configure("iris", [WebhookSink(url=receiver.url, batch_size=5, flush_s=0.2)])
    _feed(hub, 12)
    _wait(lambda: len(receiver.records()) == 12)
    sizes = [len(post.body["records"]) for post in receiver.accepted()]
    assert max(sizes) <= 5
    assert sum(sizes) == 12
    first = receiver.records()[0]
    assert first["deployment"] == "iris"
    assert first["version"] == "3"
    assert first["variant"] == "primary"
    assert first["request_id"] == "req-0"
    assert first["inputs"] == {"input-0": [[5.1, 3.5, 1.4, 0.2]]}
    assert first["outputs"] == {"predict": [0]}
    assert first["latency_ms"] >= 0
    assert first["time"].endswith("+00:00")
    assert [r["request_id"] for r in receiver.records()] == [f"req-{i}" for i in range(12)]
    _wait(lambda: hub.stats("iris")["webhook"]["sent"] == 12)  # counted once the 200 is read
    assert hub.stats("iris")["webhook"] == {"sent": 12, "failed": 0, "dropped": 0,
                                            "dead_lettered": 0}  # fmt: skip


def test_a_receiver_failing_twice_gets_the_batch_on_the_third_attempt(
    hub: SinkHub, receiver: Receiver
) -> None:
    receiver.fail_first, receiver.fail_status = 2, 503
    hub.configure("iris", [WebhookSink(url=receiver.url, batch_size=3, flush_s=0.1)])
    _feed(hub, 3)
    receiver.wait_for(1)
    assert [post.status for post in receiver.posts] == [503, 503, 200]
    assert [p.body for p in receiver.posts[:2]] == [receiver.posts[2].body] * 2  # the same batch
    _wait(lambda: hub.stats("iris")["webhook"]["sent"] == 3)
    assert hub.stats("iris")["webhook"]["failed"] == 2
    assert not (hub.folder / "dead-letter").exists()


def test_429_is_retried_and_a_400_is_not(hub: SinkHub, receiver: Receiver) -> None:
    receiver.fail_first, receiver.fail_status = 1, 429
    hub.configure("iris", [WebhookSink(url=receiver.url, batch_size=1)])
    _feed(hub, 1)
    receiver.wait_for(1)
    assert [post.status for post in receiver.posts] == [429, 200]
    receiver.fail_first, receiver.fail_status = -1, 400
    _feed(hub, 1)
    _wait(lambda: hub.stats("iris")["webhook"]["dead_lettered"] == 1)
    assert [post.status for post in receiver.posts] == [429, 200, 400]  # not sent again


def test_a_receiver_that_always_fails_fills_the_dead_letter_file_with_whole_lines(
    hub: SinkHub, receiver: Receiver
) -> None:
    receiver.fail_first, receiver.fail_status = -1, 500
    sink = WebhookSink(url=receiver.url, batch_size=4, flush_s=0.1, max_attempts=3)
    hub.configure("iris", [sink])
    _feed(hub, 10)
    _wait(lambda: hub.stats("iris")["webhook"]["dead_lettered"] == 10)
    letter = hub.folder / "dead-letter" / "iris.webhook.jsonl"
    raw = letter.read_bytes()
    assert raw.endswith(b"\n")
    lines = [json.loads(line) for line in raw.splitlines()]
    assert [line["request_id"] for line in lines] == [f"req-{i}" for i in range(10)]
    assert all(line["dead_letter"]["error"] == "HTTP 500" for line in lines)
    batches = [json.dumps(post.body, sort_keys=True) for post in receiver.posts]
    assert all(batches.count(batch) == 3 for batch in batches)  # three attempts per batch
    assert all(len(post.body["records"]) <= 4 for post in receiver.posts)
    assert hub.stats("iris")["webhook"]["failed"] == len(receiver.posts)
    assert letter.stat().st_mode & 0o777 == 0o600


def test_a_receiver_nobody_listens_on_is_retried_within_the_deadline(hub: SinkHub) -> None:
    sink = WebhookSink(url="http://127.0.0.1:9/nothing", batch_size=1, max_attempts=20,
                       deadline_s=0.5)  # fmt: skip
    hub.configure("iris", [sink])
    started = time.monotonic()
    _feed(hub, 1)
    _wait(lambda: hub.stats("iris")["webhook"]["dead_lettered"] == 1)
    assert time.monotonic() - started < 5
    line = json.loads((hub.folder / "dead-letter" / "iris.webhook.jsonl").read_text())
    assert line["dead_letter"]["error"].startswith("ConnectError")
    assert 1 <= hub.stats("iris")["webhook"]["failed"] < 20


def test_a_full_queue_drops_and_counts_without_slowing_the_caller(
    hub: SinkHub, receiver: Receiver
) -> None:
    receiver.delay_s = 0.5  # a slow receiver: the queue fills behind its first batch
    hub.configure("iris", [WebhookSink(url=receiver.url, queue_size=20, batch_size=10)])
    feed = hub.feeds["iris"]
    started, cpu_started = time.perf_counter(), time.thread_time()
    for i in range(2000):
        feed.offer("3", None, f"r{i}", started, INPUTS, OUTPUTS)
    # CPU time, which a busy machine does not stretch; a waiting offer would drop nothing.
    per_offer_us = (time.thread_time() - cpu_started) / 2000 * 1e6
    stats = hub.stats("iris")["webhook"]
    assert stats["dropped"] >= 2000 - 40
    assert per_offer_us < 20, per_offer_us  # about a microsecond: never waits for the receiver
    receiver.delay_s = 0
    _wait(lambda: hub.stats("iris")["webhook"]["sent"] == 2000 - stats["dropped"])
    text = _scrape(hub)
    assert (
        f'nstarx_sink_dropped_records_total{{owner="iris",sink="webhook"}} {stats["dropped"]}'
        in text
    )


def test_cloudevents_are_what_kserve_logger_sends(hub: SinkHub, receiver: Receiver) -> None:
    sink = WebhookSink(url=receiver.url, format="cloudevents", headers={"Authorization": "X y"})
    hub.configure("iris", [sink])
    _feed(hub, 1)
    receiver.wait_for(2)
    request, response = receiver.accepted()
    assert request.headers["ce-type"] == REQUEST_EVENT
    assert response.headers["ce-type"] == RESPONSE_EVENT
    for post in (request, response):
        assert post.headers["ce-specversion"] == "1.0"
        assert post.headers["ce-id"] == "req-0"
        assert post.headers["ce-inferenceservicename"] == "iris"
        assert post.headers["authorization"] == "X y"
        assert post.headers["content-type"] == "application/json"
    assert request.body == {
        "id": "req-0",
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
        ],
    }
    assert response.body["outputs"][0]["data"] == [0]
    assert response.body["model_version"] == "3"


def test_mode_request_sends_only_the_request_events(hub: SinkHub, receiver: Receiver) -> None:
    hub.configure("iris", [WebhookSink(url=receiver.url, format="cloudevents", mode="request")])
    _feed(hub, 2)
    receiver.wait_for(2)
    time.sleep(0.3)
    assert [post.headers["ce-type"] for post in receiver.posts] == [REQUEST_EVENT] * 2


def test_cloudevents_after_a_failed_one_go_to_the_dead_letter_without_more_attempts(
    hub: SinkHub, receiver: Receiver
) -> None:
    receiver.fail_first, receiver.fail_status = -1, 503
    sink = WebhookSink(
        url=receiver.url, format="cloudevents", max_attempts=2, batch_size=3, flush_s=300
    )  # one batch of three: sent when the third is queued
    hub.configure("iris", [sink])
    _feed(hub, 3)
    _wait(lambda: hub.stats("iris")["webhook"]["dead_lettered"] == 6)  # 3 requests, 3 responses
    assert len(receiver.posts) == 2  # the first event's two attempts, then no more
    lines = (hub.folder / "dead-letter" / "iris.webhook.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events == [REQUEST_EVENT, RESPONSE_EVENT] * 3


def test_jsonl_files_hold_every_record_and_rotate_by_size(hub: SinkHub) -> None:
    hub.configure("iris", [FileSink(batch_size=7, flush_s=0.1, rotate_mb=0.002)])
    _feed(hub, 40)
    _wait(lambda: hub.stats("iris")["file"]["sent"] == 40)
    folder = hub.folder / "iris"
    files = sorted(folder.glob("records*.jsonl"))
    assert len(files) > 1  # 2 KB per file: rotated
    lines = [json.loads(line) for file in files for line in file.read_text().splitlines()]
    assert sorted(line["request_id"] for line in lines) == sorted(f"req-{i}" for i in range(40))
    assert all(line["outputs"] == {"predict": [0]} for line in lines)


def test_parquet_files_appear_whole(hub: SinkHub) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    hub.configure("iris", [FileSink(format="parquet", path="pq", rotate_s=0.2, flush_s=0.1)])
    _feed(hub, 15)
    _wait(lambda: hub.stats("iris")["file"]["sent"] == 15)
    folder = hub.folder / "pq"
    assert not list(folder.glob(".*.tmp"))
    rows = [
        row for f in sorted(folder.glob("part-*.parquet")) for row in pq.read_table(f).to_pylist()
    ]
    assert sorted(r["request_id"] for r in rows) == sorted(f"req-{i}" for i in range(15))
    assert json.loads(rows[0]["outputs"]) == {"predict": [0]}


def test_a_folder_outside_the_sink_root_is_refused_unless_trusted(
    hub: SinkHub, tmp_path: Path
) -> None:
    for path in (str(tmp_path / "elsewhere"), "../outside", "a/../../outside", "/"):
        with pytest.raises(ForbiddenError, match="outside the sink folder"):
            hub.check("iris", [FileSink(path=path)])
    (tmp_path / "sinks").mkdir()
    (tmp_path / "sinks" / "link").symlink_to(tmp_path)  # inside by name, outside for real
    with pytest.raises(ForbiddenError):
        hub.check("iris", [FileSink(path="link/x")])
    assert hub.check("iris", [FileSink(path="nested/ok")]) == [
        (tmp_path / "sinks" / "nested" / "ok").resolve()
    ]
    assert hub.check("iris", [FileSink(path=str(tmp_path / "own"))], trusted=True) == [
        (tmp_path / "own").resolve()
    ]
    with pytest.raises(ForbiddenError):  # not even the admin writes into the keys' folder
        hub.check("iris", [FileSink(path=str(tmp_path / "security" / "x"))], trusted=True)


def test_a_redeploy_keeps_the_counters_and_a_removal_stops_the_sink(
    hub: SinkHub, receiver: Receiver
) -> None:
    sink = WebhookSink(url=receiver.url, batch_size=2, flush_s=0.1)
    hub.configure("iris", [sink])
    _feed(hub, 2)
    _wait(lambda: hub.stats("iris")["webhook"]["sent"] == 2)
    hub.configure("iris", [sink])
    _feed(hub, 2)
    _wait(lambda: hub.stats("iris")["webhook"]["sent"] == 4)
    hub.remove("iris")
    assert "iris" not in hub.feeds
    assert 'nstarx_sink_sent_records_total{owner="iris",sink="webhook"} 4.0' in _scrape(hub)


def test_the_queued_records_are_delivered_when_the_hub_closes(
    hub: SinkHub, receiver: Receiver
) -> None:
    hub.configure("iris", [WebhookSink(url=receiver.url, batch_size=1000, flush_s=300)])
    _feed(hub, 5)
    hub.close(timeout_s=10)
    assert len(receiver.records()) == 5


def _scrape(hub: SinkHub) -> str:
    registry = CollectorRegistry()
    registry.register(hub.collector())
    return generate_latest(registry).decode()


# -- the spec --------------------------------------------------------------------------------


def test_sink_configs_refuse_what_they_cannot_send() -> None:
    for bad in ("ftp://x/y", "file:///etc/passwd", "http://", "http://user:pw@host/x"):
        with pytest.raises(InvalidInputError, match="url"):
            DeploymentSpec.build(name="a", sinks=[{"kind": "webhook", "url": bad}])
    for header in ("Content-Length", "ce-type", "Bad Header"):
        with pytest.raises(InvalidInputError, match="header"):
            DeploymentSpec.build(name="a", sinks=[{"url": "http://h/", "headers": {header: "x"}}])
    with pytest.raises(InvalidInputError, match="used twice"):
        DeploymentSpec.build(name="a", sinks=[{"kind": "file"}, {"kind": "file", "name": "file"}])
    with pytest.raises(InvalidInputError, match="queue_size"):
        DeploymentSpec.build(name="a", sinks=[{"kind": "file", "queue_size": 0}])


def test_a_spec_without_defaults_reads_back_the_same() -> None:
    spec = DeploymentSpec.build(name="a", sinks=[{"kind": "file"}, {"url": "http://h/x"}])
    again = DeploymentSpec.build(**spec.model_dump(mode="json", exclude_defaults=True))
    assert again == spec
    assert "headers" not in repr(WebhookSink(url="http://h/", headers={"A": "secret"}))


def test_hidden_headers_sent_back_keep_their_values() -> None:
    before = [WebhookSink(url="http://h/", headers={"Authorization": "Bearer s3cret"})]
    again = [WebhookSink(url="http://h/2", headers={"Authorization": "***", "X-Other": "1"})]
    kept = keep_secrets(list(again), list(before))
    assert isinstance(kept[0], WebhookSink)
    assert kept[0].headers == {"Authorization": "Bearer s3cret", "X-Other": "1"}
    with pytest.raises(ValueError, match="no value"):
        keep_secrets(list(again), [])


def test_kserve_logger_round_trips_as_a_cloudevents_webhook() -> None:
    spec = DeploymentSpec.build(name="iris", storage_uri="s3://bucket/iris", sinks=[
        {"kind": "webhook", "url": "http://dumper.default/", "format": "cloudevents",
         "mode": "response"},
        {"kind": "file", "format": "jsonl"},
    ])  # fmt: skip
    isvc = kserve.to_manifests(spec)[-1]
    assert isvc["spec"]["predictor"]["logger"] == {"url": "http://dumper.default/",
                                                   "mode": "response"}  # fmt: skip
    assert json.loads(isvc["metadata"]["annotations"][kserve.SINKS_ANNOTATION]) == [
        {"kind": "file"}
    ]
    assert from_kserve(isvc).sinks == spec.sinks


def test_a_kserve_logger_without_a_url_or_a_sink_with_headers_is_refused() -> None:
    isvc: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": {"predictor": {"logger": {"mode": "all"},
                               "sklearn": {"storageUri": "s3://b/iris"}}},
    }  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"logger\.url"):
        from_kserve(isvc)
    sinks = [{"url": "http://h/", "headers": {"X-Key": "k"}}]
    spec = DeploymentSpec.build(name="iris", storage_uri="s3://b/iris", sinks=sinks)
    with pytest.raises(InvalidInputError, match="secrets do not go into a manifest"):
        kserve.to_manifests(spec)
