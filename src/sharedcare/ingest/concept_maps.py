"""Local codes translated through ConceptMaps kept per source, the original coding always kept
(docs/ingest.md, "Local codes and ConceptMaps"; hazard H-060).

**A source's local code systems** are listed in its registration (`Source.code_systems`, `sharedcare
sources add --code-system`). An entry with a colon is a code system URI, used as it is (what FHIR and
CSV feeds put in `Coding.system`); any other entry is an HL7 v2 coding system name as sent in CWE-3 or
CWE-6 (`L`, `99ZZZ`, `LOCAL`; `local` for a code sent with no name), which stands for the URI the HL7
v2 mappers give codes in that system: `https://sharedcare.example/CodeSystem/hl7v2/<ODS>/<name>`
(`datatypes.coding_system`), the sending organisation's own, stable whatever message carries it.

**A ConceptMap belongs to a source** when its `useContext` names the source (code `feed-source` of
`USAGE_CONTEXT`, value the source id under `SOURCE_ID_SYSTEM`) and it was written by the node itself
(`sharedcare sources conceptmap add`) or by the source's own organisation; one naming a source that
another organisation wrote is never applied. Only maps with status `active` and a `url` are applied,
and of them only the groups whose `source` is one of the source's local code systems and that name a
`target` system.

**Translation** (`translate`) walks every CodeableConcept, at any depth, of every resource in a
mapped transaction. For a coding in a local system that a map translates:
- a target whose R4 equivalence is `equivalent` or `equal`, with no `dependsOn` or `product`
  condition, is appended after the original codings, as system, code and display, with an extension
  (`TRANSLATED_BY`) naming the map (`url|version`) it came from;
- any other equivalence (`wider`, `narrower`, `inexact`, `relatedto`, ...) or a conditional target is
  never asserted as a coding: it is said in the message's warnings;
- `unmatched` or `disjoint` leave the coding as it is; a code the maps do not mention leaves it too,
  with the warning "no translation for a local code in system X".
The original codings are never changed, moved or removed. A coding already present is never added
again; when the translations of one concept give two different codes in one target system, or the
concept already carries a different code in it, nothing is added for that system (a warning says so),
since either would assert two meanings at once. Warnings name code systems and maps, never a code.

**Loading.** The maps are read once per change: a cache per store is checked, for each message of a
source with local code systems, against a stamp that any write of a ConceptMap changes
(`concept_map_store.stamp`), so a changed map applies to the next message processed, a replayed dead
letter included.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine

from sharedcare.access.context import system_caller
from sharedcare.errors import InvalidResource
from sharedcare.fhir import interactions, jsonio
from sharedcare.fhir.search import query as search_query
from sharedcare.fhir.validation import validate_or_raise
from sharedcare.ingest.hl7v2 import datatypes as dt
from sharedcare.ingest.hl7v2.mapping import Mapped, token_value
from sharedcare.storage import concept_map_store, inbox_store
from sharedcare.storage.inbox_store import Source
from sharedcare.storage.repository import SOURCE_PREFIX, Repository, Stored

USAGE_CONTEXT = "https://sharedcare.example/CodeSystem/usage-context"
FEED_SOURCE = "feed-source"
SOURCE_ID_SYSTEM = "https://sharedcare.example/Id/feed-source"
TRANSLATED_BY = "https://sharedcare.example/StructureDefinition/translated-by"
ASSERTED = frozenset({"equivalent", "equal"})  # R4 ConceptMap equivalences safe to assert as a coding
NOT_A_MATCH = frozenset({"unmatched", "disjoint"})
_LISTED = 100


def system_uri(entry: str, ods: str) -> str:
    """A `code_systems` entry as the `Coding.system` its codes carry: a URI as it is, an HL7 v2 coding
    system name as the HL7 v2 mappers write it for the source's organisation."""
    return entry if ":" in entry else dt.coding_system(entry, ods)


def local_systems(source: Source) -> frozenset[str]:
    """The code system URIs of the source's local codes."""
    return frozenset(system_uri(e, source.ods) for e in source.code_systems if e)


def use_context(source_id: str) -> dict[str, Any]:
    """The `useContext` that says a ConceptMap belongs to a source."""
    return {"code": {"system": USAGE_CONTEXT, "code": FEED_SOURCE},
            "valueCodeableConcept": {"coding": [{"system": SOURCE_ID_SYSTEM, "code": source_id}]}}


def named_sources(doc: dict[str, Any]) -> set[str]:
    """The sources a ConceptMap's `useContext` says it belongs to."""
    out: set[str] = set()
    for ctx in _dicts(doc.get("useContext")):
        code, value = ctx.get("code"), ctx.get("valueCodeableConcept")
        if not isinstance(code, dict) or code.get("system") != USAGE_CONTEXT or code.get("code") != FEED_SOURCE \
                or not isinstance(value, dict):
            continue
        out |= {c["code"] for c in _dicts(value.get("coding"))
                if c.get("system") == SOURCE_ID_SYSTEM and isinstance(c.get("code"), str)}
    return out


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def map_reference(doc: dict[str, Any]) -> str:
    """The canonical reference to a ConceptMap: `url|version`, or the url alone without a version."""
    version = doc.get("version")
    return f"{doc['url']}|{version}" if isinstance(version, str) and version else str(doc["url"])


@dataclass(frozen=True)
class Target:
    """One target of one local code in one map."""

    system: str
    code: str
    display: str | None
    equivalence: str
    conditional: bool  # dependsOn or product: holds only when other elements match, which is not checked
    map_ref: str

    def coding(self) -> dict[str, Any]:
        out: dict[str, Any] = {"extension": [{"url": TRANSLATED_BY, "valueCanonical": self.map_ref}],
                               "system": self.system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out


@dataclass(frozen=True)
class Maps:
    """A source's translations: the targets of each (local system, code), and the local systems the
    maps cover (a code of one of them that no map mentions is reported)."""

    targets: dict[tuple[str, str], list[Target]] = field(default_factory=dict)
    systems: frozenset[str] = frozenset()


EMPTY = Maps()


def compile_maps(docs: Iterable[dict[str, Any]], systems: frozenset[str]) -> Maps:
    """The translations the active ConceptMaps `docs` give for codes in `systems`, in order."""
    targets: dict[tuple[str, str], list[Target]] = {}
    covered: set[str] = set()
    for doc in docs:
        if doc.get("status") != "active" or not isinstance(doc.get("url"), str):
            continue
        ref = map_reference(doc)
        for group in _dicts(doc.get("group")):
            source, target = group.get("source"), group.get("target")
            if source not in systems or not isinstance(target, str) or not target:
                continue
            assert isinstance(source, str)
            covered.add(source)
            for element in _dicts(group.get("element")):
                code = element.get("code")
                if not isinstance(code, str):
                    continue
                found = targets.setdefault((source, code), [])
                for t in _dicts(element.get("target")):
                    equivalence = str(t.get("equivalence") or "")
                    to_code = t.get("code")
                    if equivalence in NOT_A_MATCH or not isinstance(to_code, str) or not to_code:
                        found.append(Target(target, "", None, equivalence or "unmatched", False, ref))
                        continue
                    display = t.get("display") if isinstance(t.get("display"), str) else None
                    found.append(Target(target, to_code, display, equivalence,
                                        bool(t.get("dependsOn") or t.get("product")), ref))
    return Maps(targets, frozenset(covered))


def translate(mapped: Mapped, maps: Maps) -> Mapped:
    """Add the translations of local codes to `mapped`'s resources (in place), and say in its warnings
    what was not added; `mapped` itself."""
    if not maps.systems:
        return mapped
    notes: dict[str, None] = {}
    for entry in _dicts(mapped.bundle.get("entry")):
        if isinstance(entry.get("resource"), dict):
            _walk(entry["resource"], maps, notes)
    mapped.warnings.extend(n for n in notes if n not in mapped.warnings)
    return mapped


def _walk(node: Any, maps: Maps, notes: dict[str, None]) -> None:
    if isinstance(node, dict):
        codings = node.get("coding")
        if isinstance(codings, list):
            _concept(codings, maps, notes)
        for key, value in node.items():
            if key != "coding":  # a coding holds no concept of its own to translate; the originals stay as sent
                _walk(value, maps, notes)
    elif isinstance(node, list):
        for value in node:
            _walk(value, maps, notes)


def _concept(codings: list[Any], maps: Maps, notes: dict[str, None]) -> None:
    """One CodeableConcept's codings: the translations appended after them."""
    originals = _dicts(codings)
    present: dict[str, set[str]] = {}
    for c in originals:
        if isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
            present.setdefault(c["system"], set()).add(c["code"])
    proposed: dict[str, dict[str, Target]] = {}  # target system -> code -> where it came from
    for c in originals:
        system, code = c.get("system"), c.get("code")
        if not isinstance(system, str) or system not in maps.systems or not isinstance(code, str):
            continue
        found = maps.targets.get((system, code))
        if not found:
            notes[f"no translation for a local code in system {system}"] = None
            continue
        for t in found:
            if t.equivalence in NOT_A_MATCH:
                continue
            if t.conditional:
                notes[f"a local code in system {system} has a translation to {t.system} that depends on other "
                      f"elements ({t.map_ref}): not added as a coding"] = None
            elif t.equivalence not in ASSERTED:
                notes[f"a local code in system {system} has only a '{t.equivalence}' translation to {t.system} "
                      f"({t.map_ref}): not added as a coding"] = None
            else:
                proposed.setdefault(t.system, {}).setdefault(t.code, t)
    for system, by_code in proposed.items():
        have = present.get(system, set())
        if len(by_code) > 1:
            notes[f"the translations of local codes give different codes in {system}: none added"] = None
            continue
        [(code, t)] = by_code.items()
        if code in have:
            continue  # never a duplicate coding
        if have:
            notes[f"a concept already has a different code in {system} than its local code's translation: "
                  "not added"] = None
            continue
        codings.append(t.coding())
        present.setdefault(system, set()).add(code)


# -- loading, cached per store until a ConceptMap changes ----------------------------------------

@dataclass
class _Cache:
    stamp: tuple[int, int]
    maps: dict[tuple[str, str, tuple[str, ...]], Maps] = field(default_factory=dict)


_LOCK = threading.Lock()
_CACHES: weakref.WeakKeyDictionary[Engine, _Cache] = weakref.WeakKeyDictionary()


def _query(source_id: str, *, active_only: bool) -> search_query.SearchQuery:
    items = [("context", token_value(SOURCE_ID_SYSTEM, source_id))]
    if active_only:
        items.append(("status", "active"))
    return search_query.parse("ConceptMap", items, default_count=_LISTED, max_count=_LISTED, strict=True)


def owned(repo: Repository, source: Source) -> list[dict[str, Any]]:
    """The active ConceptMaps that belong to `source` (oldest first), as the source's system sees them."""
    caller = system_caller(repo.node_id, organisation=source.ods)
    rows = concept_map_store.current(repo.engine, _query(source.source_id, active_only=True), repo.visible(caller))
    docs = []
    for row in rows:
        if row.source_org not in (None, source.ods):
            continue  # another organisation cannot give a source its translations
        doc = jsonio.loads(row.data)
        if isinstance(doc, dict) and source.source_id in named_sources(doc):
            docs.append(doc)
    return docs


def for_source(repo: Repository, source: Source) -> Maps:
    """The source's translations, from the cache while no ConceptMap has been written since."""
    systems = local_systems(source)
    if not systems:
        return EMPTY
    stamp = concept_map_store.stamp(repo.engine)  # read before the maps, so a write in between reloads next time
    key = (source.source_id, source.ods, source.code_systems)
    with _LOCK:
        cache = _CACHES.get(repo.engine)
        if cache is None or cache.stamp != stamp:
            cache = _CACHES[repo.engine] = _Cache(stamp)
        found = cache.maps.get(key)
    if found is not None:
        return found
    maps = compile_maps(owned(repo, source), systems)
    with _LOCK:
        cache.maps[key] = maps
    return maps


def translate_for(repo: Repository, source: Source, mapped: Mapped) -> Mapped:
    """What the inbox applies to every message a source's feed maps (Inbox._mapped)."""
    return translate(mapped, for_source(repo, source))


# -- the administrator's commands (`sharedcare sources conceptmap ...`) ---------------------------

class InvalidConceptMap(ValueError):
    """A ConceptMap that cannot be kept for the source; the message says why (quoting no code)."""


@dataclass(frozen=True)
class Added:
    stored: Stored
    created: bool
    new_systems: tuple[str, ...]  # local code systems added to the source's registration


def prepare(doc: Any, source: Source) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The ConceptMap as it will be stored for `source` (its useContext naming the source; no id or
    meta of the file's), and the group source systems the source does not list yet."""
    if not isinstance(doc, dict) or doc.get("resourceType") != "ConceptMap":
        raise InvalidConceptMap("the file is not a FHIR ConceptMap")
    try:
        validate_or_raise(doc)
    except InvalidResource as exc:
        raise InvalidConceptMap("not a valid R4 ConceptMap: " + "; ".join(
            i.diagnostics for i in exc.issues if i.severity in ("error", "fatal"))) from None
    if not isinstance(doc.get("url"), str):
        raise InvalidConceptMap("the ConceptMap needs a url: a map is known by it, and a file with the same url "
                                "replaces the source's map")
    others = named_sources(doc) - {source.source_id}
    if others:
        raise InvalidConceptMap("the ConceptMap's useContext names another source")
    groups = _dicts(doc.get("group"))
    if not groups:
        raise InvalidConceptMap("the ConceptMap has no group: nothing to translate")
    for n, group in enumerate(groups):
        if not group.get("source") or not group.get("target"):
            raise InvalidConceptMap(f"group[{n}] needs its source and target code systems (group.source, "
                                    "group.target)")
    known = local_systems(source)
    new = tuple(dict.fromkeys(str(g["source"]) for g in groups if g["source"] not in known))
    body = {k: v for k, v in doc.items() if k not in ("id", "meta")}
    if source.source_id not in named_sources(doc):
        body["useContext"] = [*_dicts(doc.get("useContext")), use_context(source.source_id)]
    return body, new


def add(repo: Repository, source: Source, doc: Any) -> Added:
    """Keep a ConceptMap for `source`, written by the node (audited): a new version of the source's map
    with the same url, else a new map; the source's local code systems gain its group sources."""
    body, new = prepare(doc, source)
    criteria = (f"url={quote(str(body['url']), safe='')}"
                f"&context={quote(token_value(SOURCE_ID_SYSTEM, source.source_id), safe='')}")
    with repo.unit(system_caller(repo.node_id), "update", "ConceptMap") as unit:
        result = interactions.conditional_update(unit, "ConceptMap", criteria, body, if_match=None, max_count=2)
    if new:
        inbox_store.change_source(repo.engine, source.source_id, code_systems=(*source.code_systems, *new))
    assert result.stored is not None
    return Added(result.stored, result.status == 201, new)


@dataclass(frozen=True)
class Listed:
    res_id: str
    version_id: int
    url: str
    version: str | None
    status: str
    groups: tuple[tuple[str, str, int], ...]  # (source system, target system, how many codes)
    applied: bool  # what translation uses: active, with a url, written by the node or the source's organisation
    written_by: str | None  # ODS code of the organisation that wrote it; None: the node


def listed(repo: Repository, source: Source) -> list[Listed]:
    """The ConceptMaps that name `source`, whatever their status (read as the node, audited)."""
    page = repo.search(system_caller(repo.node_id), _query(source.source_id, active_only=False),
                       f"context={token_value(SOURCE_ID_SYSTEM, source.source_id)}")
    systems = local_systems(source)
    out = []
    for item in page.items:
        if item.data is None:
            continue
        doc = jsonio.loads(item.data)
        meta_source = str((doc.get("meta") or {}).get("source") or "")
        org = meta_source[len(SOURCE_PREFIX):] if meta_source.startswith(SOURCE_PREFIX) else None
        groups = tuple((str(g.get("source") or ""), str(g.get("target") or ""), len(_dicts(g.get("element"))))
                       for g in _dicts(doc.get("group")))
        applied = (doc.get("status") == "active" and isinstance(doc.get("url"), str) and org in (None, source.ods)
                   and any(g[0] in systems and g[1] for g in groups))
        out.append(Listed(item.res_id, item.version_id, str(doc.get("url") or ""),
                          doc.get("version") if isinstance(doc.get("version"), str) else None,
                          str(doc.get("status") or ""), groups, applied, org))
    return out
