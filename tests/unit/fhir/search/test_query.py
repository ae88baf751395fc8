"""Parsing search URLs: AND/OR, escapes, result parameters, strictness, date ranges."""

from __future__ import annotations

import pytest

from sharedcare.errors import BadRequest
from sharedcare.fhir.search.query import date_range, parse, split_token, split_values


def q(*items: tuple[str, str], strict: bool = False):  # type: ignore[no-untyped-def]
    return parse("Patient", list(items), default_count=20, max_count=100, strict=strict)


def test_commas_or_and_repeats_and() -> None:
    query = q(("_id", "a,b"), ("_id", "c"))
    assert [c.values for c in query.criteria] == [("a", "b"), ("c",)]


def test_escaped_commas_and_bars() -> None:
    # An escaped comma is part of the value; other escapes stay for the type's own parsing.
    assert split_values(r"a\,b,c") == ("a,b", "c")
    assert split_values(r"a\|b\\,c") == (r"a\|b\\", "c")
    assert split_values(r"1$2\$3", "$") == ("1", "2$3")
    assert split_token(r"http://x|a\|b") == ("http://x", "a|b")
    assert split_token("|code") == ("", "code")
    assert split_token("code") == (None, "code")
    assert split_token("system|") == ("system", None)


def test_count_is_capped_and_zero_means_only_the_total() -> None:
    assert q(("_count", "5000")).count == 100
    assert q(("_count", "0")).summary_count
    with pytest.raises(BadRequest):
        q(("_count", "-1"))
    with pytest.raises(BadRequest):
        q(("_count", "ten"))


def test_unknown_parameters_are_ignored_or_refused_when_strict() -> None:
    assert q(("nonsense", "1")).ignored == ("nonsense",)
    with pytest.raises(BadRequest):
        q(("nonsense", "1"), strict=True)


def test_unsupported_modifiers_are_refused() -> None:
    with pytest.raises(BadRequest):
        q(("_id:exact", "1"))


@pytest.mark.parametrize(("value", "low", "high"), [
    ("2020", "2020-01-01T00:00:00.000000", "2020-12-31T23:59:59.999999"),
    ("2020-02", "2020-02-01T00:00:00.000000", "2020-02-29T23:59:59.999999"),
    ("2021-12-31", "2021-12-31T00:00:00.000000", "2021-12-31T23:59:59.999999"),
    ("2020-06-01T10:00:00+01:00", "2020-06-01T09:00:00.000000", "2020-06-01T09:00:00.999999"),
    ("2020-06-01T10:00Z", "2020-06-01T10:00:00.000000", "2020-06-01T10:00:59.999999"),
    ("2020-06-01T10:00:00.5Z", "2020-06-01T10:00:00.500000", "2020-06-01T10:00:00.599999"),
])
def test_date_ranges_follow_precision(value: str, low: str, high: str) -> None:
    assert date_range(value)[1:] == (low, high)
    assert date_range("ge" + value) == ("ge", low, high)


@pytest.mark.parametrize("value", ["2020-13", "2020-02-30", "yesterday", "20200101", "2020-01-01T25:00Z"])
def test_bad_dates_are_refused(value: str) -> None:
    with pytest.raises(BadRequest):
        date_range(value)
