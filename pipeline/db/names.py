"""Naming rules of the database: entry ids, source databases, lattice, mesh-set, segmentation
and channel ids become folder names or zip keys (DESIGN 3), so they are checked here."""

from __future__ import annotations

import re

from pipeline.errors import OptionError

__all__ = ["name_problem", "validate_name"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def name_problem(value: str) -> str | None:
    """Why ``value`` is not a valid database name (None: it is one).

    >>> name_problem("emd-1832"), name_problem("../x") is not None
    (None, True)
    """
    if not _NAME_RE.fullmatch(value) or ".." in value:
        return (
            f"{value!r} is not a valid name (letters, digits, '.', '_', '-'; "
            "must start with a letter or digit; no '/' or '..')"
        )
    return None


def validate_name(value: str, option: str) -> str:
    """A database folder name: no path separators, no ``..``, not starting with ``_`` or ``.``;
    else an :class:`OptionError` ``<option>: <why>``."""
    problem = name_problem(value)
    if problem is not None:
        raise OptionError(f"{option}: {problem}")
    return value
