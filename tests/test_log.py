"""JSON log lines: bounded, whole, one write each, and the libraries' records among them.

``configure`` changes the logging of the whole process, so the tests that call it run
in a child process (``python -c``) whose stdout is a pipe, as under systemd.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from bounced.log import CORE_FIELDS, MAX_FIELD_CHARS, MAX_LINE_BYTES, render_line
from tests.paths import ROOT


def event(**fields: object) -> dict[str, object]:
    return {"event": "message.received", "level": "info",
            "timestamp": "2026-11-22T13:05:00Z", "logger": "bounced.test", **fields}


def test_a_short_event_is_rendered_whole_with_the_core_fields_first() -> None:
    line = render_line(event(message_id=7, rcpt_to=["a@b.example"]))
    assert json.loads(line) == event(message_id=7, rcpt_to=["a@b.example"])
    assert list(json.loads(line))[:4] == list(CORE_FIELDS)
    assert "truncated" not in json.loads(line)


def test_a_long_string_is_cut_and_named() -> None:
    parsed = json.loads(render_line(event(error="x" * 50_000, size=3)))
    assert parsed["error"] == "x" * MAX_FIELD_CHARS + "…"
    assert parsed["truncated"] == ["error"] and parsed["size"] == 3


def test_a_long_list_keeps_its_first_items() -> None:
    rcpts = [f"bounces+{n:04}@bounce.example" for n in range(1000)]
    parsed = json.loads(render_line(event(rcpt_to=rcpts)))
    kept = parsed["rcpt_to"]
    assert 10 < len(kept) < 1000 and kept == rcpts[:len(kept)]
    assert parsed["truncated"] == ["rcpt_to"]


def test_many_long_fields_still_fit_one_line_under_pipe_buf() -> None:
    fields = {f"field{n}": "é" * 5000 for n in range(40)}
    line = render_line(event(**fields))
    assert len(line.encode()) + 1 <= MAX_LINE_BYTES
    parsed = json.loads(line)
    assert parsed["event"] == "message.received" and parsed["logger"] == "bounced.test"
    assert set(parsed["truncated"]) == set(fields)


def run_child(code: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, timeout=120,
                          check=True)


def test_library_records_warnings_and_thread_crashes_are_json_lines_too() -> None:
    out = run_child("""
        import logging, threading, warnings
        from bounced import log
        log.configure("json", "info")
        log.get_logger("bounced.test").info("own.event", value=1)
        logging.getLogger("mail.log").info("%r connection lost", ("127.0.0.1", 1))  # chatter
        logging.getLogger("mail.log").warning("%r unrecognised: %s", ("127.0.0.1", 1), "GARBAGE")
        warnings.warn("careful")
        def crash():
            raise RuntimeError("in a thread")
        thread = threading.Thread(target=crash, name="t1")
        thread.start()
        thread.join()
    """).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["event"], e["logger"], e["level"]) for e in lines] == [
        ("own.event", "bounced.test", "info"),
        ("('127.0.0.1', 1) unrecognised: GARBAGE", "mail.log", "warning"),
        (lines[2]["event"], "py.warnings", "warning"),
        ("thread.uncaught_exception", "bounced", "error"),
    ]
    assert "careful" in lines[2]["event"]
    assert lines[3]["thread"] == "t1" and "RuntimeError: in a thread" in lines[3]["exception"]
    assert all("timestamp" in e for e in lines)


def test_two_processes_writing_long_lines_to_one_pipe_never_splice() -> None:
    """The daemon and its worker share stdout. Two children log 2,000 lines each of
    nearly the maximum length into the same pipe; every line read back is whole."""
    code = """
        import sys
        from bounced import log
        log.configure("json", "info")
        logger = log.get_logger("bounced.child" + sys.argv[1])
        for n in range(2000):
            logger.info("child.line", n=n, padding=sys.argv[1] * 3600, rcpt_to=["x" * 90] * 60)
    """
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert reader.stdin is not None and reader.stdout is not None
    children = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), tag], cwd=ROOT,
                                 stdout=reader.stdin) for tag in ("a", "b")]
    reader.stdin.close()
    data = reader.stdout.read()
    for child in children:
        assert child.wait(120) == 0
    reader.wait(30)
    lines = data.splitlines()
    assert len(lines) == 4000
    counts = {"bounced.childa": 0, "bounced.childb": 0}
    for line in lines:
        assert len(line) + 1 <= MAX_LINE_BYTES
        counts[json.loads(line)["logger"]] += 1
    assert counts == {"bounced.childa": 2000, "bounced.childb": 2000}
