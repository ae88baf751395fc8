"""The access policy: the one place that decides who may see and write what (safety properties 2, 4).

Every Repository call asks the policy, and the policy answers with SQL: `visible_clause` is compiled
into the WHERE clause of every read, search (and every chain, `_has`, include and count inside it),
history and `$everything`, never applied as a filter afterwards, so totals and paging cannot betray
hidden data, and a resource the caller may not see is reported exactly like one that does not exist
(404). A search of a type the caller may not search at all is refused (403) whatever exists.

Who sees what (docs/access.md has the full table):
- the node itself (a system caller with no organisation): everything its scopes allow;
- a source organisation's system: what its own organisation wrote, and the shared directory;
- staff (a `user` in one role profile at an organisation), with the activities of their job role:
  - what their own organisation wrote, about anyone;
  - another organisation's data about a patient only while their organisation has a legitimate
    relationship with that patient (relationship table, written with the records) or they declared
    one, and the patient has not objected; or while they hold a break-glass grant for that patient;
  - never another organisation's items labelled confidential or sensitive (not even by break-glass);
  - a resource in several patients' compartments only when every one of those patients is visible;
  - job roles without the clinical record activity see demographic types only;
- a patient: the compartments of every Patient record with their own NHS number, except items a
  source labelled confidential, and the shared directory.
SMART scopes narrow all of this by type and interaction; they never widen it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Table, and_, exists, false, literal, literal_column, not_, or_, select, true

from sharedcare.access import scopes as smart
from sharedcare.access.context import Caller
from sharedcare.access.labels import CONFIDENTIAL, OBJECTION
from sharedcare.access.roles import Activity
from sharedcare.errors import FhirError
from sharedcare.fhir.search.extract import parameters_for
from sharedcare.fhir.search.query import Criterion, SearchQuery
from sharedcare.storage.dialects import utc_now_text
from sharedcare.storage.tables import access_grant, compartment, idx_token, relationship, restriction

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"

# Resources about no patient that anyone who may read records may see: the service directory and
# definitions. Other resources outside every patient compartment (Binary, Group, List, Bundle, ...)
# stay with the organisation that wrote them.
DIRECTORY_TYPES = frozenset({
    "Organization", "OrganizationAffiliation", "Practitioner", "PractitionerRole", "Location",
    "HealthcareService", "Endpoint", "Schedule", "Slot", "Medication", "Substance", "ValueSet", "CodeSystem",
    "ConceptMap", "NamingSystem", "StructureDefinition", "SearchParameter", "CapabilityStatement",
    "OperationDefinition", "Questionnaire", "PlanDefinition", "ActivityDefinition", "Library", "Measure",
})
# What a job role with the demographics activity alone (receptionists, clerks) may see.
DEMOGRAPHIC_TYPES = frozenset({"Patient", "RelatedPerson", "Organization", "Practitioner", "PractitionerRole",
                               "Location", "HealthcareService", "Endpoint"})
# What staff with the author-care-plan activity may write through the API.
CARE_PLAN_TYPES = frozenset({"CarePlan", "Goal", "Consent"})


class Policy(Protocol):
    def visible_clause(self, caller: Caller, table: Table) -> ColumnElement[bool]:
        """A WHERE clause restricting `table` (resource or resource_history) to what the caller may see."""

    def visible_key(self, caller: Caller) -> Hashable | None:
        """A key such that callers with equal keys get identical `visible_clause`s (structure and bound
        values), so the Repository may compile a statement once per key; None: compile every time."""

    def may_search(self, caller: Caller, resource_type: str) -> bool:
        """Whether the caller may search this type at all (False -> 403 whatever exists)."""

    def may_write(self, caller: Caller, resource_type: str, resource: dict[str, Any] | None,
                  interaction: str = "update") -> bool:
        """Whether the caller may create, update or delete (`interaction`) a resource of this type
        (resource is the new content; None for delete). What the write is about is checked after it,
        inside the transaction, against `visible_clause` (a write may not leave the caller's view)."""


@dataclass(frozen=True)
class Types:
    """A set of resource types; `every` means all of them."""

    every: bool
    names: frozenset[str] = frozenset()

    def __contains__(self, res_type: object) -> bool:
        return self.every or res_type in self.names

    def __and__(self, other: Types) -> Types:
        if self.every:
            return other
        if other.every:
            return self
        return Types(False, self.names & other.names)

    def clause(self, table: Table) -> ColumnElement[bool]:
        if self.every:
            return true()
        if not self.names:
            return false()
        # Type names are letters only (resource type names): rendered as literals, so the statement has
        # no list parameter and compiles once (dialects.RawStatement).
        assert all(name.isalpha() for name in self.names)
        return table.c.res_type.in_([literal_column(f"'{name}'") for name in sorted(self.names)])


ALL = Types(True)
NONE = Types(False)


def scoped_types(caller: Caller, context: str, letter: str) -> Types:
    """The types the caller's `context` scopes grant `letter` (c r u d s) on without restriction.
    Granular scopes (`?category=...`) are in `granular_scopes`."""
    names: set[str] = set()
    for scope in caller.resource_scopes:
        if scope.context != context or letter not in scope.permissions or scope.restriction:
            continue
        if scope.resource_type == "*":
            return ALL
        names.add(scope.resource_type)
    return Types(False, frozenset(names))


def granular_scopes(caller: Caller, context: str, letter: str) -> dict[str, list[tuple[tuple[str, str], ...]]]:
    """Types the caller's `context` scopes grant `letter` on only for resources matching search
    parameters (SMART granular scopes, e.g. `patient/Observation.rs?category=laboratory`), each with
    its restrictions (any one may match). A granular scope on `*` grants nothing."""
    out: dict[str, list[tuple[tuple[str, str], ...]]] = {}
    for scope in caller.resource_scopes:
        if scope.context == context and letter in scope.permissions and scope.restriction \
                and scope.resource_type != "*":
            out.setdefault(scope.resource_type, []).append(scope.restriction)
    return out


def _context(caller: Caller) -> str:
    return {"system": "system", "user": "user", "patient": "patient"}.get(caller.kind, "none")


class AccessPolicy:
    """The platform's policy (see the module docstring)."""

    MAX_CLAUSES = 4096

    def __init__(self) -> None:
        # Built conditions, per caller context and table: building one costs milliseconds, so each is
        # built once and reused by every statement (they are immutable). Bounded: rebuilt on demand.
        self._clauses: dict[tuple[Hashable, Table], ColumnElement[bool]] = {}

    def types(self, caller: Caller, letter: str) -> Types:
        """The types the caller may `letter` (r: read, s: search, c/u/d: write) by scope and role."""
        return self._by_role(caller, letter, scoped_types(caller, _context(caller), letter))

    def granular(self, caller: Caller, letter: str) -> dict[str, list[tuple[tuple[str, str], ...]]]:
        """Types the caller may `letter` only where granular scopes' restrictions match (and the role
        allows the type at all); types granted without restriction are not among them."""
        found = granular_scopes(caller, _context(caller), letter)
        if not found or letter not in "rs":
            return {}
        allowed = self._by_role(caller, letter, Types(False, frozenset(found)))
        whole = self.types(caller, letter)
        return {t: r for t, r in found.items() if t in allowed and t not in whole}

    def _by_role(self, caller: Caller, letter: str, granted: Types) -> Types:
        if caller.kind == "user":
            acts = caller.activities
            if letter in "rs":
                if Activity.VIEW_RECORD in acts:
                    return granted
                if Activity.DEMOGRAPHICS in acts:
                    return granted & Types(False, DEMOGRAPHIC_TYPES)
                return NONE
            if Activity.AUTHOR_CARE_PLAN in acts:
                return granted & Types(False, CARE_PLAN_TYPES)
            return NONE
        if caller.kind == "patient":
            return granted if letter in "rs" else NONE
        if caller.kind == "system":
            return granted
        return NONE

    # -- reading ------------------------------------------------------------------------------
    def visible_key(self, caller: Caller) -> Hashable | None:
        return (caller.kind, caller.agent_id, caller.organisation, caller.role, caller.nhs_number, caller.scopes)

    def may_search(self, caller: Caller, resource_type: str) -> bool:
        return resource_type in self.types(caller, "s") or resource_type in self.granular(caller, "s")

    def visible_clause(self, caller: Caller, table: Table) -> ColumnElement[bool]:
        key = (self.visible_key(caller), table)
        found = self._clauses.get(key)
        if found is None:
            if len(self._clauses) >= self.MAX_CLAUSES:
                self._clauses.clear()
            found = self._clauses[key] = self._visible(caller, table)
        return found

    def _visible(self, caller: Caller, table: Table) -> ColumnElement[bool]:
        readable = self.types(caller, "r")
        granular = self.granular(caller, "r")
        if readable == NONE and not granular:
            return false()
        by_type = readable.clause(table)
        if granular:
            by_type = or_(by_type, *(and_(table.c.res_type == literal_column(f"'{t}'"),
                                          or_(*(_restricted_to(t, r, table) for r in restrictions)))
                                     for t, restrictions in sorted(granular.items()) if t.isalpha()))
        if caller.kind == "system":
            if caller.organisation is None:
                return by_type
            return and_(by_type, or_(table.c.source_org == caller.organisation, _directory(table)))
        if caller.kind == "patient":
            return and_(by_type, _patient_visible(caller, table))
        if caller.kind == "user" and caller.organisation:
            return and_(by_type, _staff_visible(caller, table))
        return false()

    # -- writing ------------------------------------------------------------------------------
    def may_write(self, caller: Caller, resource_type: str, resource: dict[str, Any] | None,
                  interaction: str = "update") -> bool:
        letter = smart.INTERACTIONS.get(interaction)
        return letter is not None and resource_type in self.types(caller, letter)


def _restricted_to(res_type: str, restriction: tuple[tuple[str, str], ...], table: Table) -> ColumnElement[bool]:
    """Resources of `res_type` in `table` that match a granular scope's search parameters, compiled by
    the search engine as any search is (so `category=laboratory` means what it means in a search). A
    restriction the engine cannot compile here (an unknown parameter, `:in` value sets) matches
    nothing: a scope never grants more than it says."""
    from sharedcare.fhir.search import query as search_query
    from sharedcare.storage import search

    try:
        q = search_query.parse(res_type, list(restriction), default_count=1, max_count=1, strict=True)
        if not q.criteria or any(c.modifier in ("in", "not-in") for c in q.criteria):
            return false()
        seq = table.c.created_seq if "created_seq" in table.c else None
        owner = search.Owner(res_type, table.c.res_id, (res_type,), table.c.last_updated, seq)
        ctx = search.Context(None, lambda _t: true())  # type: ignore[arg-type]  # no value sets: no connection
        return and_(*(search.criterion_clause(c, owner, ctx) for c in q.criteria))
    except FhirError:
        return false()


def _compartments(table: Table) -> tuple[Any, Any]:
    """A subquery of the resource's compartment rows, and the compartment alias it reads (an alias of
    its own, so it never correlates with a compartment table of the query it is compiled into)."""
    c = compartment.alias()
    return select(literal(1)).select_from(c).where(c.c.res_type == table.c.res_type,
                                                  c.c.res_id == table.c.res_id).correlate_except(c), c


def _directory(table: Table) -> ColumnElement[bool]:
    """A directory resource: of a directory type (such resources are in no patient's compartment)."""
    return Types(False, DIRECTORY_TYPES).clause(table)


def own_patients(nhs_number: str) -> Any:
    """Ids of every Patient record that carries this NHS number."""
    return select(idx_token.c.res_id).where(
        idx_token.c.res_type == "Patient", idx_token.c.param == "identifier", idx_token.c.code == nhs_number,
        idx_token.c.system == NHS_NUMBER)


def _patient_visible(caller: Caller, table: Table) -> ColumnElement[bool]:
    if not caller.nhs_number:
        return _directory(table)
    own = own_patients(caller.nhs_number)
    some, _ = _compartments(table)
    others, c = _compartments(table)
    inside = and_(
        exists(some),
        not_(exists(others.where(c.c.patient_id.not_in(own)))),
        or_(table.c.security.is_(None), not_(table.c.security.contains(CONFIDENTIAL))),
    )
    return or_(inside, _directory(table))


def _staff_visible(caller: Caller, table: Table) -> ColumnElement[bool]:
    org = caller.organisation
    assert org is not None
    now = utc_now_text()

    def related(patient: Any) -> ColumnElement[bool]:
        # Relationship rows name organisations by ODS code (resolved when written: storage/indexing.py).
        r = relationship.alias()
        recorded = exists(select(literal(1)).select_from(r).where(
            r.c.patient_id == patient, r.c.organisation == f"ods:{org}",
            or_(r.c.until.is_(None), r.c.until > now)).correlate_except(r))
        return or_(recorded, *(_granted(caller, patient, kind, now) for kind in ("declared", "launch")))

    def objected(patient: Any) -> ColumnElement[bool]:
        r = restriction.alias()
        return exists(select(literal(1)).select_from(r).where(
            r.c.patient_id == patient, r.c.kind == OBJECTION).correlate_except(r))

    def patient_ok(patient: Any) -> ColumnElement[bool]:
        return or_(and_(related(patient), not_(objected(patient))), _granted(caller, patient, "break-glass", now))

    some, _ = _compartments(table)
    others, c = _compartments(table)
    shared = and_(
        table.c.security.is_(None),
        or_(_directory(table), exists(some)),
        not_(exists(others.where(not_(patient_ok(c.c.patient_id))))),
    )
    return or_(table.c.source_org == org, shared)


def _granted(caller: Caller, patient: Any, kind: str, now: Any) -> ColumnElement[bool]:
    g = access_grant.alias()
    return exists(select(literal(1)).select_from(g).where(
        g.c.agent_id == caller.agent_id, g.c.patient_id == patient,
        g.c.kind == kind, g.c.until > now, g.c.ended.is_(None)).correlate_except(g))


def query_refusal(policy: Policy, caller: Caller, query: SearchQuery,
                  own: Callable[[], frozenset[str]], base_url: str = "") -> str | None:
    """Why a search must be refused (403) whatever exists, or None. Checked before the search runs.

    - Every type the search reaches through a chain or `_has` must be one the caller may search: a
      search may not constrain on data the caller cannot read (the policy also applies inside the
      chain, so nothing leaks either way; refusing says so plainly).
    - A patient may search only their own record: a compartment, or a reference to a Patient, that
      is not one of their own records is refused rather than answered empty."""
    if caller.kind == "system" and caller.organisation is None:
        return None
    for crit in query.criteria:
        for link in crit.links:
            for res_type in link.types:
                if not policy.may_search(caller, res_type):
                    return f"you may not search {res_type} resources, so a search may not test them"
    if caller.kind != "patient":
        return None
    wanted = {query.compartment[1]} if query.compartment and query.compartment[0] == "Patient" else set()
    for crit in query.criteria:
        if crit.type == "reference" and not crit.links and crit.modifier in (None, "Patient"):
            wanted |= _patient_ids(query.res_type or "", crit, base_url)
    if wanted and not wanted <= own():
        return "a patient may search only their own record"
    return None


def _patient_ids(res_type: str, crit: Criterion, base_url: str) -> set[str]:
    """The Patient ids a reference criterion names (bare ids count when the parameter may point at a
    Patient)."""
    try:
        targets = parameters_for(res_type)[crit.name].targets
    except KeyError:
        targets = ()
    out: set[str] = set()
    base = base_url.rstrip("/") + "/" if base_url else None
    for value in crit.values:
        ref = value[len(base):] if base and value.startswith(base) else value
        if ref.startswith("Patient/"):
            out.add(ref[8:].split("/")[0])
        elif "/" not in ref and ":" not in ref and ("Patient" in targets or crit.modifier == "Patient"):
            out.add(ref)
    return out


def may_keep_index(caller: Caller) -> bool:
    """Whether the caller may decide possible matches and merge, unmerge or unlink persons in the
    patient index: staff whose role grants `review-matches`, or the node's own system clients (no
    source organisation) with a scope to write Person. A source's system never may: it writes only
    about its own records."""
    if caller.kind == "user":
        return Activity.REVIEW_MATCHES in caller.activities
    if caller.kind == "system" and caller.organisation is None:
        return smart.permits(caller.resource_scopes, "system", "Person", "update")
    return False
