"""runner.pool.job_output: a job's output kept bounded while it is still printed, and every stream,
handler and warning filter put back afterwards."""
from __future__ import annotations

import logging
import sys
import threading
import warnings

from runner.pool.job_output import BoundedLog, captured, log_limit


def test_the_end_is_kept_and_what_fell_off_is_counted():
    log = BoundedLog(10)
    log.write("abcdef")
    log.write("ghijkl")
    assert log.value().text == "cdefghijkl" and log.value().dropped == 2
    log.write("x" * 25)
    assert log.value().text == "x" * 10 and log.value().dropped == 37 - 10


def test_a_character_cut_in_two_is_left_out():
    log = BoundedLog(5)
    log.write("é" * 4)  # 8 bytes: the front cut falls inside a character
    kept = log.value()
    assert kept.text == "éé" and kept.dropped == 3


def test_writes_from_threads_all_count():
    log = BoundedLog(1000)
    threads = [threading.Thread(target=lambda: [log.write("ab") for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = log.value()
    assert len(kept.text) == 1000 and kept.dropped == 4 * 1000 - 1000


def test_the_block_sees_prints_warnings_and_records_and_the_terminal_still_does(capsys):
    out, err, handlers, filters = sys.stdout, sys.stderr, list(logging.getLogger().handlers), list(warnings.filters)
    for _ in range(2):  # a second job in the same process sees its warning again
        with captured("# header\n") as log:
            print("printed")
            print("to stderr", file=sys.stderr)
            warnings.warn("once per job")
            logging.getLogger("user").warning("a record")
        text = log.value().text
        assert text.startswith("# header\nprinted\nto stderr\n")
        assert "UserWarning: once per job" in text and "WARNING user: a record" in text
        seen = capsys.readouterr()
        assert "printed" in seen.out and "to stderr" in seen.err
    assert (sys.stdout, sys.stderr, logging.getLogger().handlers, warnings.filters) == (out, err, handlers, filters)


def test_the_limit_comes_from_the_environment(monkeypatch):
    assert log_limit() == 64 * 1024
    monkeypatch.setenv("RUNNER_JOB_LOG_KB", "2")
    assert log_limit() == 2048
    monkeypatch.setenv("RUNNER_JOB_LOG_KB", "many")
    assert log_limit() == 64 * 1024


def test_a_header_starts_a_log_only_when_something_was_printed():
    quiet = BoundedLog(100, header="# jobs 1, 2\n")
    assert quiet.value().text == ""
    quiet.write("said\n")
    assert quiet.value().text == "# jobs 1, 2\nsaid\n"
    cut = BoundedLog(0, header="# jobs 1, 2\n")
    cut.write("all dropped")
    assert cut.value().text == "# jobs 1, 2\n" and cut.value().dropped == 11
