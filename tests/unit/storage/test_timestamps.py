"""Stored timestamps and the HTTP dates made from them (Last-Modified)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from sharedcare.storage.repository import TS_FORMAT, Repository, http_date

instants = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31))


@given(instants)
def test_http_date_matches_the_standard_library(moment: datetime) -> None:
    assert http_date(moment.strftime(TS_FORMAT)) == format_datetime(moment.replace(tzinfo=UTC), usegmt=True)


def test_http_date_example() -> None:
    assert http_date("2026-11-28T02:43:04.123456") == "Sat, 28 Nov 2026 02:43:04 GMT"


@given(instants, st.integers(min_value=-12, max_value=14))
def test_now_is_fixed_width_utc_with_microseconds(moment: datetime, offset_hours: int) -> None:
    local = moment.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=offset_hours)))
    repo = mock.Mock(spec=Repository)
    repo.clock = lambda: local
    assert Repository.now(repo) == moment.strftime(TS_FORMAT)
    assert len(Repository.now(repo)) == 26
