"""A conditional lookup by one `system|code` token (what feeds and conditional updates send) takes a
statement compiled once per caller policy instead of building the search: it must find exactly what
the search finds (long values keyed, escaped separators, deletions, what the caller may not see)."""

from __future__ import annotations

import pytest

from sharedcare.access.context import system_caller
from sharedcare.app import Services
from sharedcare.fhir.search import query as search_query
from sharedcare.storage import search

LONG = "x" * 250
IDENTS = [("https://example.org/mrn", "A1"), ("https://example.org/mrn", "a|b,c"), ("https://example.org/mrn", LONG),
          ("https://example.org/other", "A1")]


def _patient(system: str, value: str) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}]}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")


@pytest.mark.parametrize("org", [None, "RJ7"])
def test_the_compiled_lookup_finds_exactly_what_the_search_finds(store: Services, org: str | None) -> None:
    writer = system_caller(organisation="RJ7")
    with store.repo.unit(writer, "create") as unit:
        for system, value in IDENTS:
            unit.create(_patient(system, value))
        gone = unit.create(_patient("https://example.org/mrn", "GONE")).stored.res_id
    with store.repo.unit(system_caller(organisation="RJ1"), "create") as unit:
        unit.create(_patient("https://example.org/mrn", "A1"))  # another organisation's record
    with store.repo.unit(writer, "delete") as unit:
        unit.delete("Patient", gone)
    caller = system_caller(organisation=org)
    asked = [*IDENTS, ("https://example.org/mrn", "GONE"), ("https://example.org/mrn", "missing"),
             ("https://example.org/mrn", "x" * 249)]
    with store.repo.unit(caller, "search-type") as unit:
        for system, value in asked:
            q = search_query.parse("Patient", [("identifier", f"{_escape(system)}|{_escape(value)}")],
                                   default_count=5, max_count=5, strict=True)
            assert search.single_token(q) is not None
            fast = sorted(unit.find(q, limit=5))
            slow = sorted(search.find_ids(unit.conn, q, store.repo.visible(caller), 5))
            assert fast == slow, (system, value[:20])
            expected = 0 if value in ("GONE", "missing", "x" * 249) else (
                2 if (system, value) == ("https://example.org/mrn", "A1") and org is None else 1)
            assert len(fast) == expected, (system, value[:20])


def test_only_a_single_system_and_code_token_takes_the_compiled_lookup() -> None:
    def parse(*pairs: tuple[str, str]) -> search_query.SearchQuery:
        return search_query.parse("Patient", list(pairs), default_count=2, max_count=2, strict=True)

    assert search.single_token(parse(("identifier", "s|v"))) == ("s", "v")
    assert search.single_token(parse(("identifier", "v"))) is None  # no system: every system's codes
    assert search.single_token(parse(("identifier", "s|v,s|w"))) is None
    assert search.single_token(parse(("identifier:not", "s|v"))) is None
    assert search.single_token(parse(("identifier", "s|v"), ("family", "x"))) is None
    assert search.single_token(parse(("_id", "abc"))) is None
