"""Integers a database can hold: every id, index and count is a signed 64-bit integer.

Inputs with larger integers (a segment id of 2**70, a frame index of thousands of digits, a
JSON number with more digits than Python converts) are refused with one line naming the value
(shortened) and where it is, instead of an OverflowError or a traceback later.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import InputFormatError

__all__ = ["INT64_MAX", "INT64_MIN", "checked_int", "json_int", "shortened"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_MAX_DIGITS = 19  # every int64 has at most 19 digits


def shortened(text: str, keep: int = 24) -> str:
    """A long number as its first digits and its length (``1234…(5000 digits)``)."""
    text = str(text)
    return text if len(text) <= keep else f"{text[:keep]}…({len(text)} characters)"


def _too_big(text: str) -> bool:
    digits = text.strip().lstrip("+-")
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        return True
    value = int(text)
    return not INT64_MIN <= value <= INT64_MAX


def checked_int(value: int | str, what: str, path: str | Path | None) -> int:
    """``value`` (an int or the text of one) as an int within int64; else an input error
    ``<what> <value> is beyond the 64-bit integer range``."""
    text = str(value).strip() if not isinstance(value, int) else None
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return value
        try:
            text = shortened(str(value))
        except ValueError:  # more digits than Python converts to text
            text = f"(about 10^{int(value.bit_length() * 0.30103)})"
        raise InputFormatError(f"{what} {text} is beyond the 64-bit integer range", path)
    assert text is not None
    if _too_big(text):
        raise InputFormatError(f"{what} {shortened(text)} is beyond the 64-bit integer range", path)
    return int(text)


def json_int(path: str | Path | None):  # type: ignore[no-untyped-def]
    """A ``parse_int`` hook for :func:`json.loads`: integers beyond int64 are input errors
    (checked on the text, before Python converts thousands of digits)."""

    def parse(text: str) -> int:
        return checked_int(text, "JSON integer", path)

    return parse
