"""Values of any length are stored and found (storage/keys.py). FHIR puts no limit on a string's
length, but PostgreSQL refuses an index entry over about 2.7 KB: before index keys were made to fit,
a Patient with a 2,000-character Greek name was refused on PostgreSQL and stored on SQLite. Both backends
now store it and find it alike."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.helpers import ids, make, patient

GREEK = "αβγδεζηθικλμνξοπρστυφχψω"  # two bytes each in UTF-8


def _text(seed: int, n: int = 2000) -> str:
    """Letters that do not compress (PostgreSQL compresses a long index entry before it measures it),
    2 bytes each: 2,000 of them (a search value may have up to 2,048) make 4,000 bytes."""
    rng = random.Random(seed)
    return "".join(rng.choice(GREEK) for _ in range(n))


def _observation(reference: str, code: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": reference},
            "code": code or {"text": "a test"}}


def test_a_very_long_name_is_stored_and_found_by_prefix_and_in_full(client: TestClient) -> None:
    name = _text(1)
    twin = name[:170] + _text(2, 1800)  # the same first 170 characters, then different
    long_one = make(client, patient(name))
    other = make(client, patient(twin))
    short = make(client, patient(name[:30]))
    assert ids(client, f"Patient?family={name[:20]}") == {long_one, other, short}
    assert ids(client, f"Patient?family={name[:160]}") == {long_one, other}
    assert ids(client, f"Patient?family={quote(name)}") == {long_one}  # the whole value: exact
    assert ids(client, f"Patient?family:exact={quote(name)}") == {long_one}
    assert ids(client, f"Patient?family={quote(name[:1500])}") == set()  # see storage/keys.py
    assert ids(client, f"Patient?family:exact={quote(twin)}") == {other}
    assert ids(client, f"Patient?phonetic={quote(name)}") == {long_one}  # Metaphone keeps Greek as it is


def test_a_very_long_identifier_or_code_matches_only_itself(client: TestClient) -> None:
    value = _text(3)
    near = value[:190] + _text(4, 1500)
    first = make(client, {**patient("Long"), "identifier": [{"system": "urn:x", "value": value}]})
    make(client, {**patient("Near"), "identifier": [{"system": "urn:x", "value": near}]})
    assert ids(client, f"Patient?identifier=urn:x|{quote(value)}") == {first}
    assert ids(client, f"Patient?identifier={quote(value)}") == {first}
    assert ids(client, f"Patient?identifier=urn:x|{quote(value[:200])}") == set()
    system, code = "urn:" + _text(5, 300), _text(8, 1500)  # a search value has at most 2,048 characters
    coded = make(client, _observation("Patient/p", {"coding": [{"system": system, "code": code}]}))
    assert ids(client, f"Observation?code={quote(system)}|{quote(code)}") == {coded}
    assert ids(client, f"Observation?code={quote(system)}|") == {coded}
    assert ids(client, f"Observation?code={quote(system[:250])}|") == set()
    assert ids(client, f"Observation?code=urn:x|{quote(code)}") == set()


def test_a_reference_too_long_to_name_a_resource_is_stored_and_found_by_its_text(client: TestClient) -> None:
    """A FHIR id has at most 64 characters, so `Patient/<300 characters>` names no resource on any
    server; the reference is kept (the resource is valid) and found by exactly that text."""
    long_id = _text(6, 300)
    obs = make(client, _observation(f"Patient/{long_id}"))
    far_url = "http://elsewhere.example/fhir/Patient/" + _text(7, 1500)
    far = make(client, _observation(far_url))
    assert ids(client, f"Observation?subject=Patient/{long_id}") == {obs}
    assert ids(client, f"Observation?subject=Patient/{long_id[:64]}") == set()
    assert ids(client, f"Observation?subject={quote(far_url)}") == {far}
    assert client.get(f"/fhir/Patient/{make(client, patient('Someone'))}/$everything").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL refused such rows, so has none to re-key
def test_long_values_written_before_keys_fit_are_rekeyed_by_migration_0011(client: TestClient, store: Any) -> None:
    """SQLite accepted long index values before keys were made to fit; migration 0011 turns those
    rows into what the write path stores now."""
    from sqlalchemy import select, text

    from sharedcare.fhir.search.extract import extract
    from sharedcare.storage import keys
    from sharedcare.storage.tables import idx_reference, idx_string, idx_token
    from tests.support.migrations import load_migration

    name, value, long_id = _text(11), _text(12), _text(13, 300)
    bodies = [{**patient(name), "identifier": [{"system": "urn:x", "value": value}]},
              _observation(f"Patient/{long_id}")]
    for body in bodies:
        make(client, body)
    tables = (idx_string, idx_token, idx_reference)
    with store.engine.connect() as conn:
        written = [sorted(map(tuple, conn.execute(select(t)).all())) for t in tables]
    originals = {keys.fit(v): v for body in bodies for v in _strings(extract(body))}
    with store.engine.begin() as conn:  # as the old code wrote them: long values whole
        for keyed, original in originals.items():
            if keyed != original:
                conn.execute(text("UPDATE idx_string SET value = :o WHERE value = :k"), {"o": original, "k": keyed})
                conn.execute(text("UPDATE idx_token SET code = :o WHERE code = :k"), {"o": original, "k": keyed})
        conn.execute(text("UPDATE idx_reference SET target_type = 'Patient', target_id = :v, url = NULL "
                          "WHERE url = :u"), {"v": long_id, "u": f"Patient/{long_id}"})
        assert load_migration("0011_index_keys_fit").rekey(conn) >= 3
    with store.engine.connect() as conn:
        assert [sorted(map(tuple, conn.execute(select(t)).all())) for t in tables] == written
    assert ids(client, f"Patient?family={quote(name)}") != set()


def _strings(values: Any) -> list[str]:
    return [v.value for v in values.strings] + [v.code for v in values.tokens if v.code]
