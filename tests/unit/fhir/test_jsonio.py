"""FHIR JSON parsing keeps decimals exactly and refuses hostile input with a BadRequest."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharedcare.errors import BadRequest
from sharedcare.fhir import jsonio
from sharedcare.fhir.jsonio import FhirDecimal
from tests.support.conformance import conformance_files


@pytest.mark.parametrize("literal", ["1.50", "0.10", "1e2", "-0.0", "3.14159265358979323846264338327950288", "1E-7"])
def test_decimal_literals_survive_a_round_trip(literal: str) -> None:
    data = f'{{"value":{literal}}}'.encode()
    assert jsonio.dumps(jsonio.loads(data)) == data


def test_integers_beyond_64_bits_keep_their_literal() -> None:
    data = b'{"value":123456789012345678901234567890}'
    assert jsonio.dumps(jsonio.loads(data)) == data


def test_integers_stay_integers() -> None:
    assert jsonio.loads(b'{"a":1}') == {"a": 1}
    assert type(jsonio.loads(b'{"a":1}')["a"]) is int


def test_decimals_compare_as_numbers_and_copy_with_their_literal() -> None:
    d = jsonio.loads(b'{"v":1.50}')["v"]
    assert d == 1.5
    assert isinstance(d, FhirDecimal)
    assert copy.deepcopy(d).literal == "1.50"
    assert pickle.loads(pickle.dumps(d)).literal == "1.50"


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b'{"a": NaN}', b'{"a": Infinity}', b"[" * 100 + b"]" * 100])
def test_bad_json_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        jsonio.loads(body)


def test_a_byte_order_mark_is_tolerated() -> None:
    assert jsonio.loads("\ufeff{}".encode()) == {}


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_bad_request(data: bytes) -> None:
    """Whatever arrives, the parser answers with a value or a BadRequest, never another exception."""
    try:
        value = jsonio.loads(data)
    except BadRequest:
        return
    assert jsonio.loads(jsonio.dumps(value)) == value


def _nesting(value: object) -> int:
    """How deep a parsed JSON value is nested (objects and arrays count one level each)."""
    if isinstance(value, dict):
        return 1 + max((_nesting(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_nesting(v) for v in value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\abé☃'),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\abé☃', max_size=3), kids,
                                                              max_size=3), max_leaves=30)


@given(json_values, st.integers(min_value=1, max_value=12))
def test_the_depth_limit_counts_real_nesting_not_brackets_inside_strings(value: object, limit: int) -> None:
    import json

    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert jsonio._depth_ok(text.encode(), limit) == (_nesting(value) <= limit)


def test_nesting_beyond_the_limit_is_a_bad_request() -> None:
    deep = "[" * 65 + "]" * 65
    with pytest.raises(BadRequest, match="nested deeper"):
        jsonio.loads(deep.encode())
    assert jsonio.loads(("[" * 64 + "]" * 64).encode()) is not None


@pytest.mark.parametrize("path", conformance_files("synthea-r4", "*.json")[:6] + conformance_files(
    "fhirpath-r4/json-inputs", "*.json"))
def test_the_fast_parser_gives_exactly_what_the_standard_library_path_gives(path: object) -> None:
    """Bodies are parsed by msgspec; the standard library's decoder with the same decimal hook (the
    reference) must give the same values and the same decimal literals."""
    import json

    data = path.read_bytes()  # type: ignore[attr-defined]
    fast = jsonio.loads(data)
    reference = json.JSONDecoder(parse_float=FhirDecimal).decode(data.decode("utf-8").removeprefix("\ufeff"))
    assert fast == reference
    assert jsonio.dumps(fast) == jsonio.dumps(reference)
    assert json.loads(jsonio.dumps(fast)) == json.loads(data)


@pytest.mark.parametrize("body", [
    b'{"a":"\\ud800"}', b'{"a":"x\ty"}', b'{"a":1}x', b'{"a":1,}', b"[01]", b'{"a":.5}', b'{"a":+1}'])
def test_malformed_json_the_fast_parser_meets_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        jsonio.loads(body)


def test_integers_of_any_size_stay_exact_and_are_written_back_as_sent() -> None:
    for literal in ("12345678901234567890", "-9223372036854775809", "123456789012345678901234567890"):
        value = jsonio.loads(f'{{"v":{literal}}}'.encode())["v"]
        assert value == int(literal)
        assert jsonio.dumps({"v": value, "n": [value, 1.5]}) == f'{{"v":{literal},"n":[{literal},1.5]}}'.encode()
    # Digits inside strings are only text (a Synthea narrative carries 19-digit seeds).
    assert jsonio.loads(b'{"div":"seed: 1416774286699354796","v":2}') == {"div": "seed: 1416774286699354796", "v": 2}
