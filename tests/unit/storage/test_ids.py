"""Server-assigned ids: time-ordered UUIDs, so tables keyed by resource id grow at their right edge."""

from __future__ import annotations

import re
import time
import uuid

from sharedcare.storage.repository import new_id

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def test_ids_are_version_7_uuids_and_valid_fhir_ids() -> None:
    for _ in range(1000):
        text = new_id()
        value = uuid.UUID(text)
        assert FHIR_ID.fullmatch(text)
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert str(value) == text


def test_ids_carry_the_millisecond_they_were_made_and_sort_by_it() -> None:
    before = time.time_ns() // 1_000_000
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= uuid.UUID(first).int >> 80 <= uuid.UUID(second).int >> 80 <= after
    assert first < second  # the text sorts by time too (fixed-width lower-case hex)


def test_ids_are_unique_within_one_millisecond() -> None:
    ids = [new_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
