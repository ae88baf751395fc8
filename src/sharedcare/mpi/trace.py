"""National tracing of the index's records against PDS (issue 6, item 6): each record is checked once
(and again after its demographics change), and what PDS says is kept beside it, never written into
the source's Patient.

- A record with an NHS number: PDS's record for that number is read. If PDS holds it for someone born
  on the record's birth date, the number is **verified**. If PDS holds no record for it, or holds it for
  someone born on another day, it is a **mismatch**: the number is not used for linking from then on
  (it may be someone else's), and the record's automatic link is decided again without it.
- A record without one: PDS is asked to trace it by family name, birth date, first given name, sex
  and postcode (then without the postcode: people move), for one person at most. When exactly one
  comes back, its number is **traced**: the record links by it from then on (an automatic link is
  decided again). None (or more than one, which PDS answers as none) is **not-found**.
- A record without a family name or full birth date cannot be traced (**not-found**, not asked).

PDS out of reach stops the round: what was checked is kept, the rest is left for the next round.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from sharedcare.mpi.pds import PdsClient, PdsUnavailable
from sharedcare.storage import dialects, mpi_store
from sharedcare.storage.indexing import stored_instant


@dataclass
class Round:
    checked: Counter[str] = field(default_factory=Counter)  # by outcome
    relinked: int = 0
    stopped: str | None = None  # why the round stopped early (PDS out of reach)


def check(client: PdsClient, f: Mapping[str, Any]) -> tuple[str, str | None]:
    """What PDS says of one record's features: (status, the number PDS confirmed or found)."""
    number, birth = f.get("nhs_number"), f.get("birth_date")
    if number and f.get("nhs_number_checked", True):
        found = client.get(str(number))
        if found is None or (birth and found.birth_date != birth):
            return "mismatch", None
        return "verified", str(number)
    if not f.get("family") or not birth:
        return "not-found", None
    for place in dict.fromkeys((f.get("postcode"), None)):  # with the postcode, then without (people move)
        traced = client.trace(family=str(f["family"]), birth_date=str(birth), given=f.get("given1"),
                              gender=f.get("sex"), postcode=place, max_results=1)
        if len(traced) == 1:
            return "traced", traced[0].nhs_number
    return "not-found", None


def trace_pending(engine: Engine, client: PdsClient, matcher: mpi_store.Matcher, *, limit: int) -> Round:
    """Check up to `limit` records not yet checked, each kept in its own transaction."""
    done = Round()
    with engine.connect() as conn:
        pending = mpi_store.untraced(conn, limit)
    for res_id, features in pending:
        try:
            status, number = check(client, features)
        except PdsUnavailable as exc:
            done.stopped = str(exc)
            break
        now = stored_instant(datetime.now(UTC))
        with dialects.writer(engine), engine.connect().execution_options(**dialects.write_options()) as conn, \
                conn.begin():
            done.relinked += mpi_store.record_trace(conn, matcher, res_id, status, number, checked=features, now=now)
        done.checked[status] += 1
    return done
