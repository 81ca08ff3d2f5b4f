"""One form for every problem found in a JSON document: ``<file>: <json path>: <problem>``.

Every pydantic ``ValidationError`` of a document read from a file (the JSON inputs, the NGFF
metadata of an OME-Zarr, the entry's own documents) is said by this module, with one rule for
each part of the line:

- **The JSON path** starts at ``$`` (the whole file); an object member follows as ``.name``
  when the name is an identifier (letters, digits and ``_``, not starting with a digit), else
  as ``["name"]`` (a frame ``"0"``, a key with a space, NGFF's ``image-label``); a list item as
  ``[n]`` counted from 0: ``$.segment_annotations[3].color[1]``,
  ``$.shape_primitives_input["0"][2]``, ``$["image-label"].colors[0].rgba[3]``. (``.image-label``
  would read as a subtraction to jq and is not JSONPath.)
- **The location** is the place in the document, not pydantic's: the labels pydantic adds to a
  location (the branch of a union, ``[key]`` of a mapping's key) are left out, and a problem
  found in a key says ``the key: ...``. A missing or unknown key is named at the end of the path.
- **The error shown** is the deepest one (the longest JSON path: of a union, the branch that got
  furthest), the first of equally deep ones; ``(N more problems)`` follows when the document has
  N others (the failed branches of one union count as one problem, a list too short only
  because items of it failed counts as none).
- **The problem** says what was expected (``must be a number``, ``missing (a required key)``,
  ``unknown key``, ``must have at least 3 items, not 2``, else pydantic's text with ``Input
  should be`` said ``must be``) and what was found as JSON, ``(got "red")``, ``(got true)``, cut
  at 40 characters; nothing is shown for objects, lists, missing or unknown keys, or a value
  error (whose text names the value).

A document validated as part of a file (a multiscale of ``.zattrs``, the items of an edit
document) gives its place in the file as ``prefix``; a wrapper the caller put around the
document before validating it is left out of locations with ``skip``.

:func:`validation_error` turns a ``ValidationError`` into an
:class:`~pipeline.errors.InputFormatError` of that form, :func:`validated` validates a document
read from a file with a model; this module imports pydantic only when a document is validated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import InputFormatError

__all__ = [
    "json_path",
    "located_problem",
    "parse_json",
    "shown_value",
    "validated",
    "validation_error",
    "validation_problem",
]

# pydantic error types -> what the user reads (the pydantic text for the others)
_PROBLEMS = {
    "missing": "missing (a required key)",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "finite_number": "must be a finite number",
    "string_too_short": "must not be empty",
    "extra_forbidden": "unknown key",
}
# errors whose value is not shown: none to show (missing), noise (the value of an unknown key),
# or named by the text already (a validator's own message)
_NOT_SHOWN = ("missing", "extra_forbidden", "value_error", "assertion_error")
_SHOWN_CHARS = 40


def parse_json(
    text: str | bytes,
    path: str | Path,
    *,
    error: type[Exception] = InputFormatError,
    parse_int: Any = None,
    parse_constant: Any = None,
) -> Any:
    """``text`` parsed as JSON; bad JSON (syntax, encoding, nesting deeper than Python's stack)
    is one ``error`` naming ``path``: ``not valid JSON: <what> line L column C (char N)``."""
    try:
        return json.loads(text, parse_int=parse_int, parse_constant=parse_constant)
    except RecursionError:
        raise error("not valid JSON: nested too deeply", path) from None  # type: ignore[call-arg]
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        detail = " ".join(str(exc).split())
        raise error(f"not valid JSON: {detail}", path) from None  # type: ignore[call-arg]


def json_path(loc: Iterable[Any]) -> str:
    """A location (keys and list indices) as a JSON path.

    >>> json_path(["segment_annotations", 3, "color"]), json_path([]), json_path(["a", "0"])
    ('$.segment_annotations[3].color', '$', '$.a["0"]')
    >>> json_path(["image-label", "colors", 0])
    '$["image-label"].colors[0]'
    """
    out = "$"
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part), ensure_ascii=False)}]"
    return out


def shown_value(value: Any) -> str:
    """`` (got <value>)``: a JSON scalar as JSON, cut at 40 characters; empty for anything
    else (an object or a list, whose place the path says).

    >>> shown_value("red"), shown_value(True), shown_value(None), shown_value([1])
    (' (got "red")', ' (got true)', ' (got null)', '')
    """
    if not isinstance(value, str | int | float | bool | None):
        return ""
    text = json.dumps(value, ensure_ascii=False)
    cut = text[:_SHOWN_CHARS] + "..." if len(text) > _SHOWN_CHARS else text
    return f" (got {cut})"


def _child(node: Any, part: Any) -> tuple[bool, Any]:
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if (
        isinstance(node, list | tuple)
        and isinstance(part, int)
        and not isinstance(part, bool)
        and 0 <= part < len(node)
    ):
        return True, node[part]
    return False, None


def _located(error: Any, document: Any, skip: int) -> tuple[tuple[Any, ...], bool, Any]:
    """The location of an error in ``document``: its parts that are keys or indices of the
    document (and the key that is missing or unknown, at the end); whether it is about a
    mapping's key (pydantic's ``[key]`` label); and the location of the first other label
    (a union's branch: the union's place), None when there is none."""
    raw = tuple(error["loc"])[skip:]
    loc: list[Any] = []
    node = document
    on_key = False
    union = None
    for i, part in enumerate(raw):
        found, child = _child(node, part)
        if found:
            node = child
            loc.append(part)
        elif i == len(raw) - 1 and error["type"] in ("missing", "extra_forbidden"):
            loc.append(part)
        elif part == "[key]":
            on_key = True
        elif union is None:
            union = tuple(loc)
    return tuple(loc), on_key, union


def _knock_on(error: Any) -> bool:
    """A list that is too short only because items of it failed (pydantic counts the items
    that passed): not a problem of its own."""
    value, ctx = error.get("input"), error.get("ctx") or {}
    return (
        error["type"] == "too_short"
        and isinstance(value, list | tuple)
        and len(value) >= ctx.get("min_length", 0)
    )


def _problem(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("too_short", "too_long"):
        short = kind == "too_short"
        bound = "at least" if short else "at most"
        n = ctx.get("min_length" if short else "max_length")
        items = f"{n} item" if n == 1 else f"{n} items"
        problem = f"must have {bound} {items}, not {ctx.get('actual_length')}"
    else:
        problem = _PROBLEMS.get(kind) or " ".join(str(error["msg"]).split())
        for lead in ("Value error, ", "Assertion failed, "):
            problem = problem.removeprefix(lead)
        if problem.startswith("Input should be "):
            problem = "must be " + problem.removeprefix("Input should be ")
    if kind not in _NOT_SHOWN:
        problem += shown_value(error.get("input"))
    return problem


def located_problem(
    exc: Any, document: Any, prefix: Sequence[Any] = (), *, skip: int = 0
) -> tuple[tuple[Any, ...], str]:
    """The location (keys and indices, from the file's root) and the problem of the error of
    a pydantic ``ValidationError`` that is shown (see :func:`validation_problem`), for a
    caller that names the place its own way (an option of the command line)."""
    errors = exc.errors(include_url=False)
    errors = [error for error in errors if not _knock_on(error)] or errors
    located = [_located(error, document, skip) for error in errors]
    best = max(range(len(errors)), key=lambda i: (len(located[i][0]), -i))
    loc, on_key, _ = located[best]
    problem = _problem(errors[best])
    if on_key:
        problem = f"the key: {problem}"
    # one problem per error, except the failed branches of one union (one per union's place)
    others = len({("union", u) if u is not None else i for i, (_, _, u) in enumerate(located)}) - 1
    if others:
        problem += f" ({others} more problem{'s' if others > 1 else ''})"
    return (*prefix, *loc), problem


def validation_problem(
    exc: Any, document: Any, prefix: Sequence[Any] = (), *, skip: int = 0
) -> str:
    """``<json path>: <problem>`` of a pydantic ``ValidationError`` raised validating
    ``document`` (the JSON value as read): its deepest error, the first of equally deep ones,
    and how many other problems there are.

    ``prefix``: the place of ``document`` in its file (``("multiscales", 0)``), put before
    every path. ``skip``: how many leading parts of every error location to leave out (those
    of a wrapper the caller validated around ``document``, e.g. ``{"items": document}``).
    """
    loc, problem = located_problem(exc, document, prefix, skip=skip)
    return f"{json_path(loc)}: {problem}"


def validation_error(
    exc: Any, document: Any, path: str | Path, prefix: Sequence[Any] = (), *, skip: int = 0
) -> InputFormatError:
    """The input error for a pydantic ``ValidationError`` met validating ``document`` read
    from ``path``: its text is ``<file>: <json path>: <problem>`` (see
    :func:`validation_problem` for ``prefix`` and ``skip``)."""
    return InputFormatError(validation_problem(exc, document, prefix, skip=skip), path)


def validated(model: Any, document: Any, path: str | Path) -> Any:
    """``document`` (the JSON value read from ``path``) validated with the pydantic ``model``;
    a problem is one :func:`validation_error`."""
    from pydantic import ValidationError

    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_error(exc, document, path) from None
