"""The patient index as staff and systems use it (issue 6, items 3, 4 and 7): Person, the review queue,
and manual merge, unmerge and unlink. Each call is checked (access/policy.may_keep_index for changes;
the caller's own visibility for every Patient shown) and audited; each change is written with its
audit record in one transaction, and kept in the link history.

A Person shows only the links to Patients the caller may see: a Person never reveals that a record
exists elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from sharedcare.access.audit import AuditRecord, mark_audited
from sharedcare.access.context import Caller
from sharedcare.access.policy import may_keep_index
from sharedcare.errors import BadRequest, Conflict, FhirError, Forbidden, NotFound
from sharedcare.fhir import jsonio
from sharedcare.mpi.comparisons import COMPARISONS, Comparison
from sharedcare.mpi.normalise import NHS_NUMBER_SYSTEM
from sharedcare.storage import audit_store, dialects, mpi_store
from sharedcare.storage.repository import Repository

# Person.link.assurance (http://hl7.org/fhir/identity-assuranceLevel): a link a member of staff made or
# confirmed is level4; one the matcher made is level3.
ASSURANCE = {mpi_store.AUTOMATIC: "level3", mpi_store.MANUAL: "level4", mpi_store.MERGE: "level4"}
DECISIONS = {"link": "linked", "apart": "kept-apart"}
MAX_REASON = 1_000


@dataclass(frozen=True)
class ReviewItem:
    row: mpi_store.ReviewRow
    patients: tuple[dict[str, Any], dict[str, Any]] | None  # both Patients as the caller may see them
    levels: dict[str, str]  # comparison -> the level the pair agrees at (the side-by-side's verdicts)


class MpiService:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.engine = repo.engine

    # -- reading --------------------------------------------------------------------------------------
    def _may_read(self, caller: Caller, operation: str, res_id: str | None = None) -> None:
        if not self.repo.policy.may_search(caller, "Patient"):
            self.repo.record(caller, "read", 403, res_type="Person", res_id=res_id, query=operation)
            raise Forbidden("you may not read the patient index")

    def _shown(self, conn: Connection, caller: Caller, person: str | None) -> dict[str, Any] | None:
        """The Person as the caller may see it (only links to Patients they may see); None when none."""
        links = mpi_store.person_links(conn, person) if person else []
        seen = mpi_store.visible_records(conn, [link.res_id for link in links], self.repo.visible(caller))
        shown = [link for link in links if link.res_id in seen]
        if person is None or not shown:
            return None
        return person_resource(person, shown, mpi_store.record_numbers(conn, [link.res_id for link in shown]))

    def person(self, caller: Caller, person_id: str) -> dict[str, Any]:
        """The Person, with the links the caller may see; 404 when they may see none."""
        self._may_read(caller, "read", person_id)
        with self.engine.connect().execution_options(**dialects.read_options(self.engine)) as conn:
            found = self._shown(conn, caller, person_id)
        if found is None:
            self.repo.record(caller, "read", 404, res_type="Person", res_id=person_id)
            raise NotFound("Person resource not found")
        self.repo.record(caller, "read", 200, res_type="Person", res_id=person_id, patients=linked_ids(found))
        return found

    def person_of(self, caller: Caller, patient_id: str, query: str) -> list[dict[str, Any]]:
        """Person?link=Patient/{id}: the person of a Patient the caller may see (none otherwise)."""
        self._may_read(caller, query)
        with self.engine.connect().execution_options(**dialects.read_options(self.engine)) as conn:
            visible = mpi_store.visible_records(conn, [patient_id], self.repo.visible(caller))
            found = self._shown(conn, caller, mpi_store.person_of(conn, patient_id) if visible else None)
        self.repo.record(caller, "search", 200, res_type="Person", query=query,
                         patients=linked_ids(found) if found else ())
        return [found] if found else []

    # -- the review queue ---------------------------------------------------------------------------
    def check_keeper(self, caller: Caller, operation: str) -> None:
        """Refuse (audited) a caller who may not keep the index, before anything else is read."""
        self._require_keeper(caller, operation)

    def _require_keeper(self, caller: Caller, operation: str, reason: str | None = None) -> str:
        """Refuse (audited) a caller who may not keep the index, or a change without a reason; the
        reason as kept."""
        if not may_keep_index(caller):
            self.repo.record(caller, "operation", 403, res_type="Person", query=operation)
            raise Forbidden("deciding matches and merging persons needs the review-matches activity")
        kept = (reason or "").strip()[:MAX_REASON]
        if reason is not None and not kept:
            self.repo.record(caller, "operation", 400, res_type="Person", query=operation)
            raise BadRequest("give a reason: it is kept with the decision")
        return kept

    def queue(self, caller: Caller, *, status: str, count: int, after: str | None) -> tuple[list[mpi_store.ReviewRow],
                                                                                           int]:
        self._require_keeper(caller, "$review-queue")
        if status not in ("open", "linked", "kept-apart", "withdrawn"):
            self.repo.record(caller, "operation", 400, res_type="Person", query="$review-queue")
            raise BadRequest("status is one of open, linked, kept-apart, withdrawn")
        with self.engine.connect() as conn:
            rows = mpi_store.reviews(conn, status=status, count=count, after=after)
            total = mpi_store.count_reviews(conn, status)
        self.repo.record(caller, "operation", 200, res_type="Person", query="$review-queue",
                              patients=tuple(dict.fromkeys(i for r in rows for i in (r.res_id, r.other_id))))
        return rows, total

    def review(self, caller: Caller, review_id: str) -> ReviewItem:
        """One review, side by side: both Patients as the caller may see them (each read audited) and
        the level each comparison agrees at."""
        from sharedcare.mpi import packaged

        self._require_keeper(caller, "$review-queue")
        with self.engine.connect() as conn:
            row = mpi_store.review(conn, review_id)
            left = mpi_store.record_features(conn, row.res_id) if row else None
            right = mpi_store.record_features(conn, row.other_id) if row else None
        if row is None:
            self.repo.record(caller, "operation", 404, res_type="Person", query="$review-queue")
            raise NotFound("no such review")
        patients: tuple[dict[str, Any], dict[str, Any]] | None = None
        try:
            patients = (jsonio.loads(self.repo.read(caller, "Patient", row.res_id).data or b"{}"),
                        jsonio.loads(self.repo.read(caller, "Patient", row.other_id).data or b"{}"))
        except FhirError:
            patients = None  # a record since deleted (the review is withdrawn) or not visible to this caller
        levels: dict[str, str] = {}
        if left is not None and right is not None and patients is not None:  # only for records the caller sees
            score = packaged.load().model.score(left[0], right[0])
            levels = {c.name: level_label(c, score.levels[c.name]) for c in COMPARISONS}
        return ReviewItem(row, patients, levels)

    def decide(self, caller: Caller, review_id: str, decision: str, reason: str) -> mpi_store.ReviewRow:
        """Link (the two records' persons become one) or keep apart (never linked or queued again
        automatically); the review is closed with who decided, when and why."""
        reason = self._require_keeper(caller, "$review-decide", reason)
        if decision not in DECISIONS:
            self.repo.record(caller, "operation", 400, res_type="Person", query="$review-decide")
            raise BadRequest("decision is 'link' or 'apart'")

        def act(conn: Connection, changes: mpi_store.Changes) -> tuple[str | None, tuple[str, ...]]:
            row = mpi_store.review(conn, review_id, lock=True)
            if row is None:
                raise NotFound("no such review")
            if row.status != "open":
                raise Conflict(f"this review was already closed ({row.status})")
            mpi_store.close_review(conn, review_id, DECISIONS[decision], agent=caller.agent_id, now=changes.now,
                                   reason=reason)
            if decision == "apart":
                return None, (row.res_id, row.other_id)
            source, target = mpi_store.person_of(conn, row.res_id), mpi_store.person_of(conn, row.other_id)
            if source is None or target is None:
                raise Conflict("one of the records has left the index (deleted): the review cannot link it")
            if source != target:
                mpi_store.merge_persons(changes, source, target)
            return target, (row.res_id, row.other_id)
        self._change(caller, "$review-decide", reason, act)
        with self.engine.connect() as conn:
            done = mpi_store.review(conn, review_id)
        assert done is not None
        return done

    def history(self, caller: Caller, patient_id: str) -> list[Any]:
        """Every change to the links of the records of this Patient's person, oldest first (each with
        its change id, for an unmerge)."""
        self._require_keeper(caller, "$link-history")
        with self.engine.connect() as conn:
            person = mpi_store.person_of(conn, patient_id)
            ids = [link.res_id for link in mpi_store.person_links(conn, person)] if person else [patient_id]
            rows = mpi_store.link_history(conn, ids)
        self.repo.record(caller, "operation", 200, res_type="Person", res_id=person, query="$link-history",
                              patients=tuple(dict.fromkeys(r.res_id for r in rows)))
        return rows

    # -- merges ------------------------------------------------------------------------------------------
    def merge(self, caller: Caller, source: str, target: str, reason: str) -> tuple[str, list[str]]:
        """Move every record of person `source` to person `target`; returns the change id (for an
        unmerge) and the records moved."""
        reason = self._require_keeper(caller, "$merge", reason)
        if source == target:
            self.repo.record(caller, "operation", 400, res_type="Person", query="$merge")
            raise BadRequest("a person cannot be merged into itself")

        def act(conn: Connection, changes: mpi_store.Changes) -> tuple[str | None, tuple[str, ...]]:
            for person in (source, target):
                if not mpi_store.person_links(conn, person):
                    raise NotFound(f"Person/{person} has no records to merge")
            return target, tuple(mpi_store.merge_persons(changes, source, target))
        change_id, moved = self._change(caller, "$merge", reason, act)
        return change_id, list(moved)

    def unmerge(self, caller: Caller, change_id: str, reason: str) -> tuple[str, list[str]]:
        """Put the links a merge (or a review's link) changed back as they were before it."""
        reason = self._require_keeper(caller, "$unmerge", reason)

        def act(conn: Connection, changes: mpi_store.Changes) -> tuple[str | None, tuple[str, ...]]:
            rows = [r for r in mpi_store.change(conn, change_id) if r.event == "merged"]
            if not rows:
                raise NotFound("no merge with this change id")
            for r in rows:
                now_at = mpi_store.current_link(conn, r.res_id)
                if now_at is None or now_at[0] != r.new_person:
                    raise Conflict("a record of this merge has been moved since (or deleted): unlink records "
                                   "one at a time instead")
            for r in rows:
                changes.link(r.res_id, r.old_person, how=r.old_how, grade="certain", score=None, event="unmerged",
                             old=(r.new_person, r.new_how))
            return rows[0].old_person, tuple(r.res_id for r in rows)
        new_change, restored = self._change(caller, "$unmerge", reason, act)
        return new_change, list(restored)

    def unlink(self, caller: Caller, patient_id: str, reason: str) -> tuple[str, str]:
        """Take one record out of its person into a new person of its own (a wrong link found);
        the matcher will not move it back. Returns the change id and the new person."""
        reason = self._require_keeper(caller, "$unlink", reason)

        def act(conn: Connection, changes: mpi_store.Changes) -> tuple[str | None, tuple[str, ...]]:
            if mpi_store.current_link(conn, patient_id) is None:
                raise NotFound("this Patient is not in the patient index")
            return mpi_store.move_record(changes, patient_id, None), (patient_id,)
        change_id, _ = self._change(caller, "$unlink", reason, act)
        with self.engine.connect() as conn:
            person = mpi_store.person_of(conn, patient_id)
        assert person is not None
        return change_id, person

    def _change(self, caller: Caller, operation: str, reason: str, act: Any) -> tuple[str, tuple[str, ...]]:
        """Run `act(conn, changes)` in one transaction with its audit record; a refusal is audited too."""
        now = self.repo.now()
        try:
            with dialects.writer(self.engine), \
                    self.engine.connect().execution_options(**dialects.write_options()) as conn, conn.begin():
                dialects.lock_key(conn, mpi_store.LOCK)
                changes = mpi_store.Changes(conn, caller.agent_id, now, reason=reason)
                person, patients = act(conn, changes)
                audit_store.append(conn, [AuditRecord("operation", 200, caller, now, "Person", person, None,
                                                      tuple(patients), operation)])
        except FhirError as exc:
            self.repo.record(caller, "operation", exc.status, res_type="Person", query=operation)
            raise
        mark_audited()
        return changes.change_id, patients


def level_label(comparison: Comparison, level: int) -> str:
    """What a comparison level means, as a reviewer reads it ("missing" when a side lacks the field)."""
    if level < 0:
        return "missing"
    return comparison.levels[level].label if level < len(comparison.levels) else "different"


def linked_ids(person: dict[str, Any]) -> tuple[str, ...]:
    """The Patient ids a Person resource links to."""
    return tuple(link["target"]["reference"].removeprefix("Patient/") for link in person["link"])


def person_resource(person_id: str, links: list[mpi_store.Link], numbers: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "Person", "id": person_id,
        "meta": {"lastUpdated": max(link.linked for link in links)[:23] + "Z"},
    }
    if numbers:
        doc["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": n} for n in numbers]
    doc["active"] = True
    doc["link"] = [{"target": {"reference": f"Patient/{link.res_id}"}, "assurance": ASSURANCE[link.how]}
                   for link in links]
    return doc
