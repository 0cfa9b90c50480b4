"""The audit log under `kill -9`: killed while four threads record, it keeps every record whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from nstarx_jupyter.security import read_audit
from tests.integration.server import ROOT

pytestmark = pytest.mark.integration
THREADS = 4
SEGMENT_BYTES = 200_000  # small, so the kill lands after a few rotations
WRITER = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from nstarx_jupyter.security.audit_log import AuditLog, AuditRecord

    log = AuditLog(Path(sys.argv[1]), segment_bytes=int(sys.argv[2]))
    tag, count, threads = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])  # count < 0: forever

    def work(thread):
        seq = 0
        while seq != count:
            log.record(AuditRecord(time.time(), "1a2b3c4d", f"{tag}{thread}", "infer", "v2",
                                   "iris", "1", 200, 0.5, str(seq), "127.0.0.1"))
            seq += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
""")


def writer(folder: Path, tag: str, count: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [str(folder), str(SEGMENT_BYTES), tag, str(count), str(THREADS)]
    return subprocess.Popen([sys.executable, "-c", WRITER, *args], cwd=ROOT, env=env)


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("audit-*.jsonl"))


def count_lines(folder: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in segments(folder))


def wait_for_lines(process: subprocess.Popen[bytes], folder: Path, lines: int) -> None:
    deadline = time.monotonic() + 60
    while count_lines(folder) < lines:
        assert process.poll() is None, "the writer died on its own"
        assert time.monotonic() < deadline, "the writer is too slow"
        time.sleep(0.01)


def sequences(folder: Path, kills: int) -> dict[str, list[int]]:
    """Per thread, the sequence numbers on disk.

    A kill may cut the one record being written (at a page boundary), so at most `kills` lines
    fail to parse; every segment but the last ends with a newline (the next writer ends a torn
    line in its own segment); an unfinished line may stay only at the very end.
    """
    found: dict[str, list[int]] = {}
    torn = 0
    files = segments(folder)
    for index, path in enumerate(files):
        lines = path.read_bytes().split(b"\n")
        tail = lines.pop()  # b"" unless the kill tore the very last write
        assert not tail or index == len(files) - 1, f"an open line in the middle: {tail!r}"
        torn += bool(tail)
        for line in filter(None, lines):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                torn += 1
                continue
            found.setdefault(record["who"], []).append(int(record["rid"]))
    assert torn <= kills, f"{torn} torn lines after {kills} kill(s)"
    return found


def assert_contiguous(found: dict[str, list[int]], tag: str) -> None:
    for thread in range(THREADS):
        seen = found[f"{tag}{thread}"]
        assert seen == list(range(len(seen))), f"thread {thread}: lost or repeated records"


def test_records_survive_sigkill_whole_and_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        first = writer(folder, "a", -1)
        processes.append(first)
        wait_for_lines(first, folder, 5000)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL

        found = sequences(folder, kills=1)
        assert_contiguous(found, "a")
        killed = sum(len(seen) for seen in found.values())
        assert killed >= 5000
        assert len(segments(folder)) > 1
        assert len(read_audit(folder)) == killed

        second = writer(folder, "b", 100)
        processes.append(second)
        assert second.wait(timeout=60) == 0
        found = sequences(folder, kills=1)
        assert_contiguous(found, "a")
        assert_contiguous(found, "b")
        assert [len(found[f"b{n}"]) for n in range(THREADS)] == [100] * THREADS
        rows = read_audit(folder)
        assert len(rows) == killed + 100 * THREADS
        assert {row["principal"] for row in rows[-100:]} <= {f"b{n}" for n in range(THREADS)}
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
