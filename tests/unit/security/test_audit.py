"""The audit log: append-only JSON lines that survive torn writes, rotate and read back filtered."""

from __future__ import annotations

import logging
import stat
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.security import AuditLog, AuditRecord, read_audit
from nstarx_jupyter.security.audit_log import to_dataframe


def make(ts: float = 1000.0, **changes: Any) -> AuditRecord:
    base = AuditRecord(ts=ts, key="1a2b3c4d", principal="notebook", action="infer",
                       transport="v2", model="iris", version="1", status=200, latency_ms=1.5,
                       request_id="r-1", client="127.0.0.1:5000")  # fmt: skip
    return base._replace(**changes)


def as_row(rec: AuditRecord) -> dict[str, object]:
    return rec._asdict()


def test_records_read_back_as_written_oldest_first(tmp_path: Path) -> None:
    written = [make(1000.0), make(1001.0, action="deploy", transport="control", status=201)]
    with AuditLog(tmp_path / "audit") as log:
        for rec in written:
            log.record(rec)
        assert log.query() == [as_row(rec) for rec in written]
    assert read_audit(tmp_path / "audit") == [as_row(rec) for rec in written]


def test_a_record_has_only_the_fixed_fields_so_no_payload_or_key_fits() -> None:
    names = list(AuditRecord._fields)
    assert names == ["ts", "key", "principal", "action", "transport", "model", "version",
                     "status", "latency_ms", "request_id", "client"]  # fmt: skip
    with pytest.raises((AttributeError, TypeError)):
        make().payload = b"secret"  # type: ignore[attr-defined]


def test_a_whole_key_passed_by_mistake_is_cut_to_its_id(tmp_path: Path) -> None:
    secret = "Zx9" * 14
    with AuditLog(tmp_path) as log:
        log.record(make(key=f"nsx_1a2b3c4d_{secret}"))
        log.record(make(key="x" * 40))
    text = "".join(path.read_text() for path in tmp_path.glob("*.jsonl"))
    assert secret not in text
    assert [row["key"] for row in read_audit(tmp_path)] == ["1a2b3c4d", "?"]


def test_filters_select_by_time_key_action_model_and_status(tmp_path: Path) -> None:
    with AuditLog(tmp_path) as log:
        log.record(make(1000.0))
        log.record(make(1001.0, key="admin", action="deploy", transport="control", status=201))
        log.record(make(1002.0, key="-", model="wine", status=401))
        log.record(make(1003.0, model="wine", status=404))
        log.record(make(1004.0, status=503))

    def times(**filters: object) -> list[object]:
        return [row["ts"] for row in read_audit(tmp_path, **filters)]  # type: ignore[arg-type]

    assert times(since=1002.0) == [1002.0, 1003.0, 1004.0]
    assert times(until=1002.0) == [1000.0, 1001.0]
    assert times(since=1001.0, until=1003.0) == [1001.0, 1002.0]
    assert times(key="1a2b3c4d") == [1000.0, 1003.0, 1004.0]
    assert times(key="nsx_1a2b3c4d") == [1000.0, 1003.0, 1004.0]
    assert times(key="-") == [1002.0]
    assert times(action="deploy") == [1001.0]
    assert times(model="wine") == [1002.0, 1003.0]
    assert times(status=404) == [1003.0]
    assert times(status="4xx") == [1002.0, 1003.0]
    assert times(status="2XX") == [1000.0, 1001.0]
    assert times(model="wine", status="4xx", key="-") == [1002.0]
    with pytest.raises(InvalidInputError):
        read_audit(tmp_path, status="bad")


def test_limit_keeps_the_newest_matches(tmp_path: Path) -> None:
    with AuditLog(tmp_path) as log:
        for i in range(10):
            log.record(make(1000.0 + i, status=200 if i % 2 else 500))
    assert [row["ts"] for row in read_audit(tmp_path, limit=3)] == [1007.0, 1008.0, 1009.0]
    assert [row["ts"] for row in read_audit(tmp_path, limit=2, status=500)] == [1006.0, 1008.0]
    assert read_audit(tmp_path, limit=0) == []
    with pytest.raises(InvalidInputError):
        read_audit(tmp_path, limit=-1)


def test_a_torn_last_line_is_skipped_and_the_next_record_starts_a_new_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with AuditLog(tmp_path) as log:
        log.record(make(1000.0))
        segment = log.path
    whole = segment.read_bytes()
    with segment.open("ab") as out:  # what a crash in the middle of a write leaves
        out.write(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="nstarx_jupyter.security.audit_log"):
        assert [row["ts"] for row in read_audit(tmp_path)] == [1000.0]
    assert "skipped 1 torn" in caplog.text

    with AuditLog(tmp_path) as log:
        log.record(make(1001.0))
        log.record(make(1002.0))
    lines = segment.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert orjson.loads(lines[-2])["ts"] == 1002.0
    assert orjson.loads(lines[-3])["ts"] == 1001.0
    assert [row["ts"] for row in read_audit(tmp_path)] == [1000.0, 1001.0, 1002.0]


def test_a_torn_line_is_ended_in_its_own_segment_when_the_next_write_rotates(
    tmp_path: Path,
) -> None:
    with AuditLog(tmp_path) as log:
        log.record(make(1000.0))
        first = log.path
    whole = first.read_bytes()
    with first.open("ab") as out:  # a crash mid-write; the next record does not fit the segment
        out.write(whole[:10])
    with AuditLog(tmp_path, segment_bytes=len(whole) + 20) as log:
        log.record(make(1001.0))
        second = log.path
    assert second != first
    assert first.read_bytes() == whole + whole[:10] + b"\n"  # no open line left in the middle
    assert orjson.loads(second.read_bytes())["ts"] == 1001.0
    assert [row["ts"] for row in read_audit(tmp_path)] == [1000.0, 1001.0]


def test_garbage_lines_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with AuditLog(tmp_path) as log:
        log.record(make(1000.0))
        segment = log.path
    with segment.open("ab") as out:
        out.write(b'not json\n[1, 2]\n{"ts": 5}\n{"ts": "x", "status": 1}\n\n')
    with AuditLog(tmp_path) as log:
        log.record(make(1001.0))
    with caplog.at_level(logging.WARNING, logger="nstarx_jupyter.security.audit_log"):
        assert [row["ts"] for row in read_audit(tmp_path)] == [1000.0, 1001.0]
    assert "skipped 4 torn" in caplog.text


def test_segments_rotate_and_reading_spans_them_in_order(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "probe") as probe:
        probe.record(make())
        line_bytes = probe.path.stat().st_size
    with AuditLog(tmp_path, segment_bytes=3 * line_bytes) as log:
        for i in range(10):
            log.record(make(1000.0 + i))
        log.flush_durable()
    names = sorted(path.name for path in tmp_path.glob("*.jsonl"))
    assert names == [f"audit-00000{n}.jsonl" for n in range(1, 5)]
    assert all(path.stat().st_size <= 3 * line_bytes for path in tmp_path.glob("*.jsonl"))
    assert [row["ts"] for row in read_audit(tmp_path)] == [1000.0 + i for i in range(10)]
    with AuditLog(tmp_path, segment_bytes=3 * line_bytes) as log:  # reopens the last segment
        log.record(make(1010.0))
        assert log.path.name == "audit-000004.jsonl"
    assert [row["ts"] for row in read_audit(tmp_path, limit=2)] == [1009.0, 1010.0]


def test_retention_ages_out_whole_segments(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "probe") as probe:
        probe.record(make())
        line_bytes = probe.path.stat().st_size
    folder = tmp_path / "audit"
    with AuditLog(folder, segment_bytes=2 * line_bytes, keep_segments=3) as log:
        for i in range(20):
            log.record(make(2000.0 + i))
        log.flush_durable()
    assert len(list(folder.glob("*.jsonl"))) == 3
    # The newest records are kept whole and in order; the oldest went a segment at a time.
    assert [row["ts"] for row in read_audit(folder)] == [2000.0 + i for i in range(14, 20)]
    with pytest.raises(InvalidInputError, match="keep_segments"):
        AuditLog(folder, keep_segments=1)


def test_files_are_user_only(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    with AuditLog(folder, segment_bytes=10) as log:
        log.record(make())
        log.record(make())
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    segments = list(folder.glob("*.jsonl"))
    assert len(segments) == 2
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in segments)


def test_threads_never_interleave_lines(tmp_path: Path) -> None:
    with AuditLog(tmp_path, segment_bytes=50_000) as log:

        def work(thread: int) -> None:
            for i in range(500):
                log.record(make(float(i), principal=f"t{thread}"))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    rows = read_audit(tmp_path)
    for n in range(4):
        assert [row["ts"] for row in rows if row["principal"] == f"t{n}"] == [
            float(i) for i in range(500)
        ]


def test_a_closed_log_refuses_records(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.record(make())


def test_to_dataframe_puts_a_utc_time_first(tmp_path: Path) -> None:
    with AuditLog(tmp_path) as log:
        log.record(make(0.0))
        log.record(make(86400.5, model="wine"))
    frame = to_dataframe(read_audit(tmp_path))
    assert list(frame.columns)[:2] == ["time", "key"]
    assert "ts" not in frame.columns
    assert str(frame["time"].iloc[1]) == "1970-01-02 00:00:00.500000+00:00"
    assert list(frame["model"]) == ["iris", "wine"]
    assert len(to_dataframe([])) == 0
