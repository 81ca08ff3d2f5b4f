"""One form for every problem found in a JSON input: ``<file>: <json path>: <problem>``.

The JSON path starts at ``$`` (the whole document); object members follow as ``.name`` (or
``["name"]`` when the name is not an identifier, e.g. ``["0"]`` or ``["my file"]``) and list
items as ``[n]`` counted from 0: ``$.segment_annotations[3].color[1]``.

:func:`validation_error` turns a pydantic ``ValidationError`` into an
:class:`~pipeline.errors.InputFormatError` of that form; this module does not import pydantic.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.errors import InputFormatError

__all__ = ["json_path", "validation_error", "validation_problem"]

# pydantic error types -> what the user reads (the pydantic text for the others)
_PROBLEMS = {
    "missing": "missing (a required key)",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "finite_number": "must be a finite number",
    "string_too_short": "must not be empty",
    "extra_forbidden": "unknown key",
}


def json_path(loc: Iterable[Any]) -> str:
    """A pydantic error location as a JSON path.

    >>> json_path(["segment_annotations", 3, "color"]), json_path([]), json_path(["a", "0"])
    ('$.segment_annotations[3].color', '$', '$.a["0"]')
    """
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else ""
    return f" (got {text[:40]}{'...' if len(text) > 40 else ''})" if text else ""


def _items(n: Any) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def validation_problem(exc: Any, document: Any, prefix: tuple[Any, ...] = ()) -> str:
    """``<json path>: <problem>`` of the first error of a pydantic ``ValidationError`` (and how
    many more there are). The path follows ``document`` (validated from ``prefix`` down): the
    labels pydantic adds to a location (union branches, ``[key]`` of a mapping's key) are left
    out."""
    errors = exc.errors(include_url=False)
    error = errors[0]
    loc: list[Any] = []
    node = document
    on_key = False
    for part in (*prefix, *error["loc"]):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
            loc.append(part)
        elif error["type"] in ("missing", "extra_forbidden") and part == error["loc"][-1]:
            loc.append(part)  # the key that is missing (or not allowed)
        elif part == "[key]":
            on_key = True
    problem = _PROBLEMS.get(error["type"], error["msg"])
    ctx = error.get("ctx") or {}
    if error["type"] in ("too_short", "too_long"):
        bound = "at least" if error["type"] == "too_short" else "at most"
        size = _items(ctx.get("min_length" if error["type"] == "too_short" else "max_length"))
        problem = f"must have {bound} {size}, not {ctx.get('actual_length')}"
    elif problem.startswith("Input should be "):
        problem = "must be " + problem[len("Input should be ") :]
    if problem.startswith(("Value error, ", "Assertion failed, ")):
        problem = problem.split(", ", 1)[1]
    if on_key:
        problem = f"the key: {problem}"
    if error["type"] not in ("missing", "extra_forbidden", "value_error"):
        problem += _shown(error.get("input"))
    if len(errors) > 1:
        problem += f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return f"{json_path(loc)}: {problem}"


def validation_error(exc: Any, document: Any, path: str | Path) -> InputFormatError:
    """The input error for a pydantic ``ValidationError`` met in ``document`` read from
    ``path``: its text is ``<file>: <json path>: <problem>``."""
    return InputFormatError(validation_problem(exc, document), path)
