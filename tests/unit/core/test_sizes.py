"""``format_size``: bytes in binary units named as such."""

from __future__ import annotations

import pytest

from modelyard.core.sizes import format_size


@pytest.mark.parametrize(
    ("size_bytes", "text"),
    [
        (0, "0 B"),
        (812, "812 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (14_541, "14.2 KiB"),
        (3_250_586, "3.1 MiB"),
        (250_000_000, "238.4 MiB"),
        (1024**3 * 3 // 2, "1.5 GiB"),
        (1024**4 * 5, "5.0 TiB"),
        (1024**5, "1024.0 TiB"),  # the largest unit has no cap
    ],
)
def test_a_size_is_written_in_its_largest_binary_unit(size_bytes: int, text: str) -> None:
    assert format_size(size_bytes) == text


def test_a_size_that_rounds_up_to_1024_is_written_in_the_next_unit() -> None:
    assert format_size(1024 * 1024 - 1) == "1.0 MiB"  # not "1024.0 KiB"
    assert format_size(1024 * 1000) == "1000.0 KiB"
