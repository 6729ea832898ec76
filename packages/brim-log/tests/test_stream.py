"""brim.log.stream: LogStream's records, in a real log file, as text and as JSON."""

from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from brim.log import LogStream, capture_std_streams, set_txn, setup_logging
from brim.log.sinks import StreamSink
from brim.log.stream import MAX_RECORD

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "


@pytest.fixture
def logged(tmp_path, request):
    """A logger writing to a file; returns (logger, a function reading the file's lines)."""
    path = tmp_path / "test.log"
    name = f"brim-test-stream-{request.node.name}"
    fmt = getattr(request, "param", "text")
    logger = setup_logging(name, "DEBUG", syslog=False, file=str(path), fmt=fmt)
    yield logger, lambda: path.read_text().splitlines()
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def test_each_line_is_an_error_record_under_the_streams_txn(logged):
    logger, lines = logged
    stream = LogStream(logger, txn="t" * 32)
    stream.write("one\n")
    stream.write("two, ")
    stream.write("in parts\n")
    print("printed", file=stream)
    stream.write("unfinished")
    assert len(lines()) == 3  # the last waits for its newline or a flush
    assert stream.pending
    stream.flush()
    assert not stream.pending
    name = logger.name
    expected = ["one", "two, in parts", "printed", "unfinished"]
    got = lines()
    assert [re.sub(STAMP, "", x) for x in got] == [
        f"{name} ERROR {text} txn:{'t' * 32}" for text in expected]


def test_without_a_txn_of_its_own_it_takes_the_current_one(logged):
    logger, lines = logged
    stream = LogStream(logger, logging.INFO, prefix="stderr: ")
    set_txn("abc")
    try:
        stream.write("inside\n")
    finally:
        set_txn(None)
    stream.write("outside\n")
    assert lines()[0].endswith(" INFO stderr: inside txn:abc")
    assert lines()[1].endswith(" INFO stderr: outside")


def test_a_block_written_at_once_is_one_record_with_marked_continuations(logged):
    logger, lines = logged
    stream = LogStream(logger, txn="x1")
    forged = "2026-12-04 17:00:00,000 brim NOTICE 6.6.6.6 GET /admin 200"
    stream.write(f'Traceback (most recent call last):\n  File "a.py"\rbad\n{forged}\u2028{forged}\n')
    got = lines()
    assert got[0].endswith(" ERROR Traceback (most recent call last): txn:x1")
    for line in got[1:]:
        assert re.match(STAMP + r"\S+ ERROR txn:x1 \| ", line), line
    # CR, LF and U+2028 split the block into lines; none starts with the forged stamp.
    assert [x.split(" | ", 1)[1] for x in got[1:]] == [
        '  File "a.py"', "bad", forged, forged]
    assert not [x for x in got if x.startswith("2026-12-04 17:00:00,000")]


@pytest.mark.parametrize("logged", ["json"], indirect=True)
def test_in_json_a_block_is_one_line_with_the_whole_text(logged):
    logger, lines = logged
    stream = LogStream(logger, txn="j1")
    stream.write("Exception on / [GET]\nTraceback (most recent call last):\n  x\nKeyError: 1\n")
    [line] = lines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["txn"] == "j1"
    assert record["message"] == "Exception on / [GET]\nTraceback (most recent call last):\n  x\nKeyError: 1"


def test_a_record_is_at_most_max_record_characters(logged):
    logger, lines = logged
    stream = LogStream(logger)
    stream.write("y" * (2 * MAX_RECORD + 10))
    stream.flush()
    sizes = [len(re.sub(STAMP + r"\S+ ERROR ", "", x)) for x in lines()]
    assert sizes == [MAX_RECORD, MAX_RECORD, 10]


def test_blank_writes_make_no_record_and_bytes_are_refused(logged):
    logger, lines = logged
    stream = LogStream(logger)
    stream.write("\n")
    stream.write("   \n")
    stream.close()
    assert lines() == []
    with pytest.raises(TypeError):
        stream.write(b"bytes")  # type: ignore[arg-type]
    stream.write("still open after close()\n")
    assert len(lines()) == 1


def test_captured_stderr_is_never_a_sink_of_its_own_logger(logged, monkeypatch):
    logger, lines = logged
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    capture_std_streams(logger)
    assert isinstance(sys.stderr, LogStream)
    print("to stderr", file=sys.stderr)
    assert lines()[-1].endswith(" ERROR stderr: to stderr")
    # A logger set up to write to stderr now writes to the real one, not back
    # into the LogStream (which would log its own lines forever).
    other = setup_logging("brim-test-stream-stderr", syslog=False, stderr=True)
    try:
        sinks = [h.sink for h in other.handlers]  # type: ignore[attr-defined]
        assert [type(s) for s in sinks] == [StreamSink]
        assert sinks[0].stream is sys.__stderr__
    finally:
        for handler in list(other.handlers):
            other.removeHandler(handler)
