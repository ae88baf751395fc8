"""Parsing search URLs into a typed `SearchQuery` (what is asked), independent of storage.

This issue supports what conditional interactions need: `_id`, `_lastUpdated`, `identifier`, plus the
result parameters `_count`, `_total`, `_summary=count` and paging cursors. The search issue widens the
set of criteria; the shape of `SearchQuery` stays.

Rules from the R4 search page: repeated parameters are ANDed, comma-separated values are ORed, `\\,`
`\\|` `\\$` and `\\\\` escape; `_count` above the maximum is reduced to it; unknown parameters are ignored
unless the client sent `Prefer: handling=strict`, which makes them a 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sharedcare.errors import BadRequest

RESULT_PARAMS = {"_count", "_total", "_summary", "_format", "_pretty", "_cursor", "_elements", "_sort"}
SUPPORTED = {"_id": "token", "_lastUpdated": "date", "identifier": "token"}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True, slots=True)
class Criterion:
    """One search parameter occurrence: its values are ORed; several criteria are ANDed."""

    name: str
    modifier: str | None
    values: tuple[str, ...]

    def render(self) -> str:
        key = f"{self.name}:{self.modifier}" if self.modifier else self.name
        return f"{key}={','.join(escape(v) for v in self.values)}"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    res_type: str | None
    criteria: tuple[Criterion, ...] = ()
    count: int = 20
    total: str = "accurate"  # none | estimate | accurate
    summary_count: bool = False
    cursor: str | None = None
    ignored: tuple[str, ...] = field(default=())

    def canonical(self) -> str:
        """The criteria in a stable order: for self links and conditional-operation locks."""
        return "&".join(sorted(c.render() for c in self.criteria))


def split_values(raw: str) -> tuple[str, ...]:
    """Split on commas that are not escaped, then unescape."""
    parts, buf, i = [], [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            buf.append(raw[i:i + 2])
            i += 2
            continue
        if ch == ",":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return tuple(parts)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,") if "," in value or "\\" in value else value


def split_token(value: str) -> tuple[str | None, str | None]:
    """`system|code` -> (system, code); `|code` -> ("", code); `code` -> (None, code)."""
    pos = _unescaped_bar(value)
    if pos is None:
        return None, _unescape(value)
    return _unescape(value[:pos]), (_unescape(value[pos + 1:]) or None)


def _unescaped_bar(value: str) -> int | None:
    i = 0
    while i < len(value):
        if value[i] == "\\":
            i += 2
            continue
        if value[i] == "|":
            return i
        i += 1
    return None


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse(res_type: str | None, items: list[tuple[str, str]], *, default_count: int, max_count: int,
          strict: bool = False) -> SearchQuery:
    criteria: list[Criterion] = []
    ignored: list[str] = []
    count, total, summary_count, cursor = default_count, "accurate", False, None
    for key, raw in items:
        if "\x00" in key or "\x00" in raw:  # no database text can hold it; no FHIR value contains it
            raise BadRequest("search parameters must not contain NUL characters")
        name, _, modifier = key.partition(":")
        if name == "_count":
            count = _int_param("_count", raw)
        elif name == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise BadRequest("_total must be none, estimate or accurate")
            total = raw
        elif name == "_summary":
            if raw == "count":
                summary_count = True
            elif raw not in ("false",) and strict:
                raise BadRequest("only _summary=count and _summary=false are supported here")
        elif name == "_cursor":
            cursor = raw
        elif name in RESULT_PARAMS:
            continue
        elif name in SUPPORTED:
            if modifier and not (name == "identifier" and modifier in ("not",)):
                raise BadRequest(f"modifier :{modifier} is not supported on {name}")
            values = split_values(raw)
            if name == "_lastUpdated":
                for v in values:
                    date_range(v)  # validates now, so the error names the parameter
            criteria.append(Criterion(name, modifier or None, values))
        elif strict:
            raise BadRequest(f"unknown or unsupported search parameter {name!r}")
        else:
            ignored.append(name)
    if count < 0:
        raise BadRequest("_count must not be negative")
    return SearchQuery(res_type, tuple(criteria), min(count, max_count), total, summary_count or count == 0,
                       cursor, tuple(ignored))


def _int_param(name: str, raw: str) -> int:
    if not re.fullmatch(r"\d{1,9}", raw):
        raise BadRequest(f"{name} must be a whole number")
    return int(raw)


_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
FMT = "%Y-%m-%dT%H:%M:%S.%f"


def date_range(value: str) -> tuple[str, str, str]:
    """A prefixed search date -> (prefix, low, high): the instants it covers, UTC, fixed width."""
    prefix = value[:2] if value[:2] in PREFIXES else "eq"
    text = value[2:] if value[:2] in PREFIXES else value
    return (prefix, *_instants(text))


@lru_cache(maxsize=16384)
def _instants(text: str) -> tuple[str, str]:
    """(low, high) of a FHIR date, dateTime or instant. Cached: the same instants recur across the
    resources of a bundle (an encounter's start is its observations' and claims' dates too); a bad
    value raises every time (exceptions are not cached)."""
    m = _DATE.match(text)
    if not m:
        raise BadRequest("a date search value must look like 2020, 2020-01, 2020-01-31 or 2020-01-31T10:00:00Z")
    try:
        y, mo, d = int(m["y"]), int(m["m"] or 1), int(m["d"] or 1)
        start = datetime(y, mo, d, int(m["H"] or 0), int(m["M"] or 0), int(m["S"] or 0),
                         int((m["f"] or "0")[:6].ljust(6, "0")), tzinfo=UTC)
    except ValueError:
        raise BadRequest("a date search value is not a real date") from None
    if m["tz"] and m["tz"] != "Z":
        sign = 1 if m["tz"][0] == "+" else -1
        start -= sign * timedelta(hours=int(m["tz"][1:3]), minutes=int(m["tz"][4:6]))
    if m["f"]:
        end = start + timedelta(microseconds=10 ** max(0, 6 - len(m["f"])) - 1)
    elif m["S"]:
        end = start + timedelta(seconds=1, microseconds=-1)
    elif m["M"]:
        end = start + timedelta(minutes=1, microseconds=-1)
    elif m["d"]:
        end = start + timedelta(days=1, microseconds=-1)
    elif m["m"]:
        nxt = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=UTC)
        end = nxt - timedelta(microseconds=1)
    else:
        end = datetime(y + 1, 1, 1, tzinfo=UTC) - timedelta(microseconds=1) if y < 9999 else \
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    return start.strftime(FMT), end.strftime(FMT)
