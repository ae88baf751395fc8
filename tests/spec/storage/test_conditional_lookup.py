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


@pytest.mark.parametrize("org", [None, "RJ7"])
def test_inside_one_transaction_a_systems_lookups_see_everything_it_wrote_before(store: Services,
                                                                                 org: str | None) -> None:
    """A system's lookup by one token flushes only its own type's pending index rows (the rest wait for
    the end of the unit): what the unit wrote before is still found, by token, by chain and by a read."""
    caller = system_caller(organisation=org)
    with store.repo.unit(caller, "transaction") as unit:
        patient = unit.create(_patient("https://example.org/mrn", "T1")).stored.res_id
        encounter = unit.create({"resourceType": "Encounter", "status": "finished",
                                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                                 "identifier": [{"system": "https://example.org/visit", "value": "V1"}],
                                 "subject": {"reference": f"Patient/{patient}"}}).stored.res_id
        by_token = unit.find(search_query.parse("Encounter", [("identifier", "https://example.org/visit|V1")],
                                                default_count=2, max_count=2, strict=True))
        assert by_token == [encounter]
        # The Patient's rows were not needed by that lookup; a chained one needs them, and finds them.
        chained = unit.find(search_query.parse("Encounter", [("subject:Patient.identifier", "https://example.org/mrn|T1")],
                                               default_count=2, max_count=2, strict=True))
        assert chained == [encounter]
        assert unit.find(search_query.parse("Patient", [("identifier", "https://example.org/mrn|T1")],
                                            default_count=2, max_count=2, strict=True)) == [patient]
        stored = unit.current("Patient", patient)
        assert stored is not None
        assert stored.version_id == 1
    # And after the unit every row is there: a search outside finds both.
    q = search_query.parse("Encounter", [("patient", f"Patient/{patient}")], default_count=5, max_count=5)
    assert [s.res_id for s in store.repo.search(caller, q, "").items] == [encounter]
