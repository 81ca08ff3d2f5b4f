"""The one formatter of validation errors (``pipeline/json_errors.py``), on small models
defined here: the JSON path, the error chosen, the problem text and the value shown."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationError

from pipeline.errors import InputFormatError
from pipeline.json_errors import json_path, shown_value, validation_error, validation_problem


def _frame(key: str) -> str:
    if not key.isdigit():
        raise ValueError("not a time\n  index")  # a message on two lines is said on one
    return key


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: StrictInt


class Doc(BaseModel):
    a: int = 0
    inner: Item | None = None
    v: int | list[str] = 0
    frames: dict[Annotated[str, AfterValidator(_frame)], int] = {}
    three: Annotated[list[float], Field(min_length=3)] = [0.0, 0.0, 0.0]
    some: Annotated[list[Item], Field(min_length=1)] = [Item(name="x", size=1)]
    some_tuple: Annotated[tuple[Item, ...], Field(min_length=1)] = (Item(name="x", size=1),)


class Wrapper(BaseModel):
    items: list[Item]


def _problem(model: type[BaseModel], document: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(document)
    return validation_problem(info.value, document, *args, **kwargs)


def test_json_path_members_items_and_names_that_are_not_identifiers():
    assert json_path([]) == "$"
    assert json_path(["a", 3, "b_2"]) == "$.a[3].b_2"
    assert json_path(["0"]) == '$["0"]'
    assert json_path(["image-label", "colors", 0]) == '$["image-label"].colors[0]'
    assert json_path(["my file", 'say "hi"']) == '$["my file"]["say \\"hi\\""]'


def test_shown_value_is_json_cut_at_40_characters():
    assert shown_value("red") == ' (got "red")'
    assert shown_value(True) == " (got true)"
    assert shown_value(None) == " (got null)"
    assert shown_value(2.5) == " (got 2.5)"
    assert shown_value(float("nan")) == " (got NaN)"
    assert shown_value("é") == ' (got "é")'
    # '"' and 39 x are the first 40 characters of the 52 of the JSON string
    assert shown_value("x" * 50) == ' (got "' + "x" * 39 + "...)"
    assert shown_value([1, 2]) == "" and shown_value({"a": 1}) == ""


def test_a_wrong_type_names_its_path_and_the_value_found():
    assert _problem(Doc, {"a": "x"}) == '$.a: must be an integer (got "x")'
    assert _problem(Doc, {"inner": {"name": "n", "size": True}}) == (
        "$.inner.size: must be an integer (got true)"
    )


def test_the_deepest_error_is_shown_ties_to_the_first():
    # $.a (depth 1) comes first, $.inner.size (depth 2) is deeper
    document = {"a": "x", "inner": {"name": "n", "size": "big"}}
    assert _problem(Doc, document) == (
        '$.inner.size: must be an integer (got "big") (1 more problem)'
    )
    # $.a and $.three are equally deep: the first (in the model's order) is shown
    assert _problem(Doc, {"three": "abc", "a": 1.5}) == (
        "$.a: must be an integer (got 1.5) (1 more problem)"
    )


def test_missing_and_unknown_keys_are_named_without_a_value():
    assert _problem(Doc, {"inner": {"name": "n"}}) == "$.inner.size: missing (a required key)"
    assert _problem(Doc, {"inner": {"name": "n", "size": 1, "colour": "red"}}) == (
        "$.inner.colour: unknown key"
    )


def test_a_union_is_one_problem_shown_by_the_branch_that_got_furthest():
    # the int branch fails at $.v, the list branch at $.v[1]: one problem, the deeper branch
    assert _problem(Doc, {"v": ["a", 2]}) == "$.v[1]: must be a string (got 2)"
    # ... and the other problems are counted once per union
    assert _problem(Doc, {"v": {}, "a": "x"}) == (
        '$.a: must be an integer (got "x") (1 more problem)'
    )


def test_a_problem_in_a_mapping_key_says_the_key():
    assert _problem(Doc, {"frames": {"0": 1, "-1": 2}}) == (
        '$.frames["-1"]: the key: not a time index'
    )


def test_list_lengths_and_lists_short_only_because_items_failed():
    assert _problem(Doc, {"three": [1, 2]}) == "$.three: must have at least 3 items, not 2"
    assert _problem(Doc, {"three": [1, 2, 3, 4], "some": []}) == (
        "$.some: must have at least 1 item, not 0"
    )
    assert _problem(Doc, {"some": [{"name": "n"}]}) == "$.some[0].size: missing (a required key)"
    # of a tuple pydantic also says it is too short (0 items passed): not a problem of its own
    assert _problem(Doc, {"some_tuple": [{"name": "n"}]}) == (
        "$.some_tuple[0].size: missing (a required key)"
    )


def test_prefix_places_a_sub_document_and_skip_leaves_out_a_wrapper():
    items = [{"name": "a", "size": 1}, {"name": "b", "size": "big"}]
    with pytest.raises(ValidationError) as info:
        Wrapper.model_validate({"items": items})
    assert validation_problem(info.value, items, skip=1) == (
        '$[1].size: must be an integer (got "big")'
    )
    assert validation_problem(info.value, items, ("attributes", "image-label"), skip=1) == (
        '$.attributes["image-label"][1].size: must be an integer (got "big")'
    )
    error = validation_error(info.value, {"items": items}, "in/doc.json")
    assert isinstance(error, InputFormatError)
    assert str(error) == 'in/doc.json: $.items[1].size: must be an integer (got "big")'


def test_star_options_name_the_option_of_the_problem_shown():
    from pipeline.errors import OptionError
    from pipeline.inputs.star import parse_star_options

    # sphere_radius (depth 1) comes first; tomogram_size[0] (depth 2) is the one shown
    values = {"sphere_radius": float("nan"), "tomogram_size": (0, 4, 4)}
    with pytest.raises(OptionError) as info:
        parse_star_options(values, lambda key: "--" + key.replace("_", "-"), OptionError)
    assert str(info.value) == "--tomogram-size: must be greater than 0 (got 0) (1 more problem)"
