"""What a step prints, logs and warns lands in its log, bounded in size."""

from __future__ import annotations

import logging
import sys
import warnings

from modelyard.pipelines._capture import BoundedText, capture


def test_print_logging_and_warnings_are_captured_and_restored() -> None:
    sink = BoundedText()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with capture(sink):
        print("to stdout")
        sys.stderr.write("to stderr\n")
        logging.getLogger("user.code").info("fitted %d trees", 3)
        warnings.warn("deprecated thing", FutureWarning, stacklevel=1)
    text = sink.getvalue()
    assert "to stdout\nto stderr\nINFO user.code: fitted 3 trees\n" in text
    assert "FutureWarning: deprecated thing" in text
    assert (root.handlers, root.level) == (handlers, level)


def test_long_logs_keep_their_head_and_tail() -> None:
    sink = BoundedText(head_chars=10, tail_chars=20)
    for i in range(1000):
        sink.write(f"line {i:04d}\n")
    text = sink.getvalue()
    assert text.startswith("line 0000\n")
    assert text.endswith("line 0998\nline 0999\n")
    assert "[... 9970 characters omitted ...]" in text
    assert len(text) < 100
