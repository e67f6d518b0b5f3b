"""``first_line``: what a one-line error quotes of the exception behind it."""

from __future__ import annotations

import pytest

from modelyard.errors import first_line


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("bad value"), "bad value"),
        # native libraries append stack traces and context after the first line
        (RuntimeError("  shape mismatch\n  at frame 1\n  at frame 2"), "shape mismatch"),
        (OSError(), "OSError"),
        (ValueError("   \n  "), "ValueError"),
    ],
)
def test_first_line_is_the_message_s_first_line_or_the_type(exc: Exception, line: str) -> None:
    assert first_line(exc) == line


def test_a_long_line_is_cut_at_200_characters_with_an_ellipsis() -> None:
    assert first_line(ValueError("x" * 200)) == "x" * 200
    cut = first_line(ValueError("y" * 1000 + "\nsecond"))
    assert len(cut) == 200
    assert cut == "y" * 197 + "..."
