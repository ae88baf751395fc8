"""Building FHIR HTTP responses: resources (stored bytes passed through), bundles, OperationOutcomes.

Bundles embed stored resource bytes as they are (orjson Fragments), so search and history never
re-serialise what was stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.responses import Response

from sharedcare.errors import FhirError, Issue, operation_outcome
from sharedcare.fhir import formats
from sharedcare.fhir.formats import Format
from sharedcare.storage.repository import Page, Stored


def prefer(header: str | None) -> dict[str, str]:
    """Parse a Prefer header: `return=minimal, handling=strict` -> {"return": "minimal", ...}."""
    out: dict[str, str] = {}
    for part in (header or "").split(","):
        for item in part.split(";"):
            k, _, v = item.strip().partition("=")
            if k:
                out[k.lower()] = v.strip().strip('"')
    return out


def fhir_response(body: bytes | dict[str, Any] | None, fmt: Format, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    content = b"" if body is None else formats.render(body, fmt)
    return Response(content, status_code=status, headers=headers,
                    media_type=formats.media_type(fmt) if body is not None else None)


def version_headers(stored: Stored, base_url: str, *, location: bool = False) -> dict[str, str]:
    headers = {"ETag": stored.etag, "Last-Modified": stored.last_modified}
    if location:
        headers["Location"] = f"{base_url}/{stored.res_type}/{stored.res_id}/_history/{stored.version_id}"
    return headers


def error_response(exc: FhirError, fmt: Format) -> Response:
    return fhir_response(exc.outcome(), fmt, exc.status, headers=exc.headers)


def searchset(page: Page, base_url: str, self_link: str, link_for: dict[str, str | None], *,
              shape: Callable[[bytes], bytes] | None = None, warnings: list[str] | None = None) -> bytes:
    """A searchset Bundle: the matches, then resources added by _include/_revinclude (mode include),
    then an OperationOutcome (mode outcome) when parameters were ignored. `shape` subsets each
    resource (_summary, _elements)."""
    links = [{"relation": "self", "url": self_link}]
    links += [{"relation": rel, "url": url} for rel, url in link_for.items() if url]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total

    def entry(s: Stored, mode: str) -> dict[str, Any]:
        data = s.data or b"{}"
        return {"fullUrl": f"{base_url}/{s.res_type}/{s.res_id}",
                "resource": orjson.Fragment(shape(data) if shape else data), "search": {"mode": mode}}
    bundle["link"] = links
    entries = [entry(s, "match") for s in page.items] + [entry(s, "include") for s in page.included]
    if warnings:
        entries.append({"resource": operation_outcome([Issue("warning", "not-supported", w) for w in warnings]),
                        "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return orjson.dumps(bundle)


def match_bundle(chosen: list[tuple[Stored, Any]], base_url: str, grade_extension: str) -> bytes:
    """Patient/$match's answer: a searchset of the chosen Patients, best first, each with its match
    probability as `search.score` and its match grade (certain, probable, possible)."""
    entries = [{"fullUrl": f"{base_url}/{s.res_type}/{s.res_id}", "resource": orjson.Fragment(s.data or b"{}"),
                "search": {"extension": [{"url": grade_extension, "valueCode": decision.grade}],
                           "mode": "match", "score": round(decision.score.probability, 6)}}
               for s, decision in chosen]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
    if entries:
        bundle["entry"] = entries
    return orjson.dumps(bundle)


def history_bundle(page: Page, base_url: str, self_link: str, next_link: str | None) -> bytes:
    links = [{"relation": "self", "url": self_link}]
    if next_link:
        links.append({"relation": "next", "url": next_link})
    entries = []
    for s in page.items:
        entry: dict[str, Any] = {"fullUrl": f"{base_url}/{s.res_type}/{s.res_id}"}
        if s.data is not None:
            entry["resource"] = orjson.Fragment(s.data)
        method = s.method or "PUT"
        url = f"{s.res_type}/{s.res_id}" if method != "POST" else s.res_type
        entry["request"] = {"method": method, "url": url}
        entry["response"] = {
            "status": "410 Gone" if s.deleted else ("201 Created" if s.version_id == 1 else "200 OK"),
            "etag": s.etag, "lastModified": s.instant,
        }
        entries.append(entry)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "total": page.total, "link": links}
    if entries:
        bundle["entry"] = entries
    return orjson.dumps(bundle)
