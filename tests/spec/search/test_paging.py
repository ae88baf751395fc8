"""Paging: next and previous links stay correct while others write (no skipped or repeated entries)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.spec.search.helpers import bundle, make, patient


def _link(body: dict[str, Any], relation: str) -> str | None:
    url = next((link["url"] for link in body["link"] if link["relation"] == relation), None)
    return url.split("/fhir/", 1)[1] if url else None


def _page_ids(body: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]


def test_pages_neither_skip_nor_repeat_while_others_write(client: TestClient) -> None:
    first = [make(client, patient("Page", str(i))) for i in range(7)]
    body = bundle(client, "Patient?family=page&_count=3")
    seen = _page_ids(body)
    # Others write between pages: new matches, an update of one already served, one not yet served
    # updated, and one deleted.
    make(client, patient("Page", "late"))
    for res_id in (first[0], first[5]):
        current = client.get(f"/fhir/Patient/{res_id}").json()
        current["gender"] = "other"
        assert client.put(f"/fhir/Patient/{res_id}", json=current).status_code == 200
    assert client.delete(f"/fhir/Patient/{first[4]}").status_code == 204
    while (nxt := _link(body, "next")) is not None:
        body = bundle(client, nxt)
        seen += _page_ids(body)
    assert len(seen) == len(set(seen))
    assert seen == [r for r in first if r != first[4]]


def test_previous_links_walk_back(client: TestClient) -> None:
    made = [make(client, patient("Back", str(i))) for i in range(5)]
    pages = [bundle(client, "Patient?family=back&_count=2")]
    while (nxt := _link(pages[-1], "next")) is not None:
        pages.append(bundle(client, nxt))
    assert [_page_ids(p) for p in pages] == [made[0:2], made[2:4], made[4:5]]
    prev = _link(pages[-1], "previous")
    assert prev is not None
    assert _page_ids(bundle(client, prev)) == made[2:4]
    assert _link(pages[0], "previous") is None


def test_sorted_pages_walk_both_ways(client: TestClient) -> None:
    made = {make(client, patient("Sorted", birthDate=f"19{50 + i}-01-01")): i for i in range(5)}
    newest_first = sorted(made, key=lambda r: -made[r])
    pages = [bundle(client, "Patient?family=sorted&_sort=-birthdate&_count=2")]
    while (nxt := _link(pages[-1], "next")) is not None:
        pages.append(bundle(client, nxt))
    assert [i for p in pages for i in _page_ids(p)] == newest_first
    prev = _link(pages[-1], "previous")
    assert prev is not None
    assert _page_ids(bundle(client, prev)) == newest_first[2:4]


def test_a_page_link_is_bound_to_its_caller_and_cannot_be_edited(client: TestClient) -> None:
    for i in range(3):
        make(client, patient("Cursor", str(i)))
    nxt = _link(bundle(client, "Patient?family=cursor&_count=1"), "next")
    assert nxt is not None
    tampered = nxt.replace("_cursor=", "_cursor=A")
    r = client.get(f"/fhir/{tampered}")
    assert r.status_code == 400
    assert "paging link" in r.json()["issue"][0]["diagnostics"]


def test_sorted_pages_neither_skip_nor_repeat_when_sort_values_change(client: TestClient) -> None:
    made = [make(client, patient("Moving", birthDate=f"19{50 + i}-01-01")) for i in range(6)]
    body = bundle(client, "Patient?family=moving&_sort=birthdate&_count=2")
    seen = _page_ids(body)
    assert seen == made[:2]
    # Between pages the last patient's birth date moves to the front of the order, and the first
    # one's to the end: re-sorting would now repeat one and skip another.
    for res_id, born in ((made[5], "1900-01-01"), (made[0], "2020-01-01")):
        current = client.get(f"/fhir/Patient/{res_id}").json()
        current["birthDate"] = born
        assert client.put(f"/fhir/Patient/{res_id}", json=current).status_code == 200
    while (nxt := _link(body, "next")) is not None:
        body = bundle(client, nxt)
        seen += _page_ids(body)
    assert seen == made
    assert body["total"] == 6
