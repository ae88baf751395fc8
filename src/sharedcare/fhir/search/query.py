"""Parsing search URLs into a typed `SearchQuery` (what is asked), independent of storage.

Every R4 search parameter of the resource type is known (from the official definitions, through
`extract.parameters_for`), so each criterion is checked here: its modifier is one its type allows, its
values parse (dates, numbers, quantities, composites), chains name reference parameters and real
target types. Anything malformed is a 400 naming the parameter; nothing of a search string reaches SQL
except as bound values.

Rules from the R4 search page: repeated parameters are ANDed, comma-separated values are ORed, `\\,`
`\\|` `\\$` and `\\\\` escape; `_count` above the maximum is reduced to it; unknown parameters are ignored
and reported, unless the client sent `Prefer: handling=strict`, which makes them a 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import NamedTuple

from sharedcare.errors import BadRequest
from sharedcare.fhir.definitions import resource_types

RESULT_PARAMS = {"_count", "_total", "_summary", "_format", "_pretty", "_cursor", "_elements", "_sort",
                 "_include", "_revinclude", "_contained", "_containedType"}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MAX_CHAIN = 3
MAX_VALUE = 2048  # characters in one search value

# Modifiers each parameter type takes (`missing` for all); reference also takes a resource type.
MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains", "missing"}),
    "phonetic": frozenset({"missing"}),  # the string parameters named `phonetic` (fhir/search/phonetic.py)
    "token": frozenset({"not", "text", "of-type", "in", "not-in", "missing"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "reference": frozenset({"identifier", "missing"}),
    "uri": frozenset({"below", "above", "missing"}),
    "composite": frozenset({"missing"}),
    "special": frozenset(),
}
SUMMARY_MODES = ("true", "false", "text", "data", "count")


class Link(NamedTuple):
    """One hop from the resources being searched to the resources a criterion tests.

    chain: follow reference parameter `param` of the current type to resources of `types`.
    has: (reverse chain) resources of `types[0]` whose reference parameter `param` points back."""

    kind: str
    param: str
    types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Criterion:
    """One search parameter occurrence: its values are ORed; several criteria are ANDed.

    `name`, `type` and `modifier` are those of the parameter finally tested, on `target` (the searched
    type, or the type reached through `links`). `key` is the parameter as sent, for links."""

    name: str
    modifier: str | None
    values: tuple[str, ...]
    type: str = "token"
    links: tuple[Link, ...] = ()
    key: str = ""
    target: str | None = None

    def render(self) -> str:
        key = self.key or (f"{self.name}:{self.modifier}" if self.modifier else self.name)
        return f"{key}={','.join(escape(v) for v in self.values)}"


class SortKey(NamedTuple):
    name: str
    type: str
    descending: bool


class Include(NamedTuple):
    """_include (reverse=False) or _revinclude (reverse=True) of `source`'s reference parameter
    `param` (None: every reference parameter, `*`), optionally only to `target`."""

    source: str
    param: str | None
    target: str | None
    reverse: bool
    iterate: bool

    def render(self) -> str:
        key = ("_revinclude" if self.reverse else "_include") + (":iterate" if self.iterate else "")
        value = "*" if self.param is None else f"{self.source}:{self.param}"
        if self.param is not None and self.target:
            value += f":{self.target}"
        return f"{key}={value}"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    res_type: str | None
    criteria: tuple[Criterion, ...] = ()
    count: int = 20
    # none | estimate | accurate. estimate (the default) counts exactly up to ESTIMATE_CAP matches and
    # leaves the total out beyond, so a first page never waits for a count of millions.
    total: str = "estimate"
    summary_count: bool = False
    cursor: str | None = None
    ignored: tuple[str, ...] = field(default=())
    sort: tuple[SortKey, ...] = ()
    includes: tuple[Include, ...] = ()
    summary: str | None = None  # true | text | data (count is summary_count)
    elements: tuple[str, ...] = ()
    compartment: tuple[str, str] | None = None  # (compartment type, id): /Patient/123/Observation

    def canonical(self) -> str:
        """The criteria in a stable order: for conditional-operation locks."""
        return "&".join(sorted(c.render() for c in self.criteria))

    def link_params(self) -> list[tuple[str, str]]:
        """The query as parameters for self/next/previous links (criteria and result parameters)."""
        out: list[tuple[str, str]] = [tuple(c.render().split("=", 1)) for c in self.criteria]  # type: ignore[misc]
        if self.sort:
            out.append(("_sort", ",".join(("-" if k.descending else "") + k.name for k in self.sort)))
        out += [tuple(i.render().split("=", 1)) for i in self.includes]  # type: ignore[misc]
        if self.summary:
            out.append(("_summary", self.summary))
        if self.elements:
            out.append(("_elements", ",".join(self.elements)))
        if self.total != "estimate":
            out.append(("_total", self.total))
        return out


# -- splitting and escaping ------------------------------------------------------------------------

def split_values(raw: str, sep: str = ",") -> tuple[str, ...]:
    """Split on separators that are not escaped, then unescape the separator (other escapes stay
    for the type's own parsing: `\\|` in tokens, `\\$` in composites)."""
    parts, buf, i = [], [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            buf.append(raw[i + 1] if raw[i + 1] == sep else raw[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return tuple(parts)


def escape(value: str) -> str:
    """A split value back into a parameter: its commas escaped (other escapes were kept)."""
    return value.replace(",", "\\,")


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def split_token(value: str) -> tuple[str | None, str | None]:
    """`system|code` -> (system, code); `|code` -> ("", code); `code` -> (None, code); `system|` ->
    (system, None)."""
    pos = _unescaped(value, "|")
    if pos is None:
        return None, unescape(value)
    return unescape(value[:pos]), (unescape(value[pos + 1:]) or None)


def _unescaped(value: str, ch: str) -> int | None:
    i = 0
    while i < len(value):
        if value[i] == "\\":
            i += 2
            continue
        if value[i] == ch:
            return i
        i += 1
    return None


def split_prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and len(value) > 2 and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


# -- typed values --------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class NumberValue(NamedTuple):
    """A prefixed search number: `value`, and the range [low, high) its precision implies."""

    prefix: str
    value: Decimal
    low: Decimal
    high: Decimal


def number_value(raw: str, what: str = "a number search value") -> NumberValue:
    prefix, text = split_prefix(raw)
    if not _NUMBER.fullmatch(text):
        raise BadRequest(f"{what} must be a number such as 100, 5.4 or gt5.4 (got {raw[:40]!r})")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BadRequest(f"{what} is not a number: {raw[:40]!r}") from None
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)  # half a unit of the last digit given: 100 -> 0.5
    return NumberValue(prefix, value, value - half, value + half)


class QuantityValue(NamedTuple):
    number: NumberValue
    system: str | None
    code: str | None


def quantity_value(raw: str) -> QuantityValue:
    """`[prefix]number|system|code`, `number||code` (code or unit), or a bare number."""
    parts = split_values(raw, "|")
    if len(parts) not in (1, 3):
        raise BadRequest(f"a quantity search value is number, number|system|code or number||code (got {raw[:40]!r})")
    number = number_value(parts[0], "a quantity search value")
    if len(parts) == 1:
        return QuantityValue(number, None, None)
    return QuantityValue(number, unescape(parts[1]) or None, unescape(parts[2]) or None)


def date_range(value: str) -> tuple[str, str, str]:
    """A prefixed search date -> (prefix, low, high): the instants it covers, UTC, fixed width."""
    prefix, text = split_prefix(value)
    return (prefix, *_instants(text))


_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
FMT = "%Y-%m-%dT%H:%M:%S.%f"  # for parsing; `instant_text` writes them (strftime leaves years < 1000 short)
_FIRST = datetime(1, 1, 1, tzinfo=UTC)
_LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def instant_text(t: datetime) -> str:
    """An instant as the index stores it: fixed width (year always four digits), so that text order is
    time order ("0999-..." before "2020-...")."""
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}"


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
        try:
            start -= sign * timedelta(hours=int(m["tz"][1:3]), minutes=int(m["tz"][4:6]))
        except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00: before the first instant we can hold
            start = _FIRST if sign > 0 else _LAST
    try:
        end = _end(start, m, y, mo)
    except (OverflowError, ValueError):  # the range runs past the last instant we can hold
        end = _LAST
    return instant_text(start), instant_text(end)


def _end(start: datetime, m: re.Match[str], y: int, mo: int) -> datetime:
    """The last instant of the range a date of this precision covers."""
    if m["f"]:
        return start + timedelta(microseconds=10 ** max(0, 6 - len(m["f"])) - 1)
    if m["S"]:
        return start + timedelta(seconds=1, microseconds=-1)
    if m["M"]:
        return start + timedelta(minutes=1, microseconds=-1)
    if m["d"]:
        return start + timedelta(days=1, microseconds=-1)
    if m["m"]:
        return datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
    return datetime(y + 1, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)


def _check_value(ptype: str, modifier: str | None, value: str, name: str, components: tuple[str, ...] = ()) -> None:
    """Parse a value now, so a malformed one is a 400 naming the parameter."""
    if len(value) > MAX_VALUE:
        raise BadRequest(f"the value of {name} is too long")
    if modifier == "missing":
        if value not in ("true", "false"):
            raise BadRequest(f"{name}:missing takes true or false")
        return
    if value == "":
        raise BadRequest(f"{name} needs a value")
    try:
        match ptype:
            case "date":
                date_range(value)
            case "number":
                number_value(value)
            case "quantity":
                quantity_value(value)
            case "token" if modifier == "of-type":
                if len(split_values(value, "|")) != 3:
                    raise BadRequest(f"{name}:of-type takes type-system|type-code|value")
            case "phonetic":
                from sharedcare.fhir.search import phonetic

                if not phonetic.codes(unescape(value)):
                    raise BadRequest(f"{name} needs a name (letters) to match by sound")
            case "composite":
                parts = split_values(value, "$")
                if len(parts) != len(components):
                    raise BadRequest(f"{name} takes {len(components)} values joined by $")
                for part, ctype in zip(parts, components, strict=True):
                    _check_value(ctype, None, part, name)
    except BadRequest as exc:
        raise BadRequest(f"{name}: {exc}") from None


# -- parsing criteria ----------------------------------------------------------------------------------

def _params(res_type: str) -> dict[str, object]:
    from sharedcare.fhir.search.extract import parameters_for

    return parameters_for(res_type)  # type: ignore[return-value]


def _info(res_type: str, name: str) -> object | None:
    return _params(res_type).get(name)


def _check_type_name(name: str, what: str) -> str:
    if name not in resource_types():
        raise BadRequest(f"{what}: {name!r} is not a resource type")
    return name


def _criterion(res_type: str, key: str, raw: str, depth: int = 0) -> Criterion:
    """A criterion of `res_type` from a parameter key as sent (`name`, `name:modifier`,
    `ref:Type.name`, `ref.name`, `_has:Type:ref:name`) and its raw value."""
    from sharedcare.fhir.search.extract import SearchParamInfo, component_types

    if key.startswith("_has:"):
        parts = key.split(":", 3)
        if len(parts) < 4 or not parts[3]:
            raise BadRequest(f"{key}: _has takes _has:Type:reference-parameter:parameter")
        source = _check_type_name(parts[1], key)
        ref = _info(source, parts[2])
        if not isinstance(ref, SearchParamInfo) or ref.type != "reference":
            raise BadRequest(f"{key}: {parts[2]!r} is not a reference parameter of {source}")
        if ref.targets and res_type not in ref.targets:
            raise BadRequest(f"{key}: {source}.{parts[2]} does not refer to {res_type}")
        if depth >= MAX_CHAIN:
            raise BadRequest(f"{key}: chains are limited to {MAX_CHAIN} links")
        inner = _linked(source, parts[3], raw, depth, key)
        return _with_link(inner, Link("has", parts[2], (source,)), key, res_type)
    head, dot, rest = key.partition(".")
    name, _, modifier = head.partition(":")
    info = _info(res_type, name)
    if not isinstance(info, SearchParamInfo) or not info.expression or info.type == "special":
        raise _Unknown(name)  # unknown, or defined without an expression (_content, _query, near)
    if dot:
        if info.type != "reference":
            raise BadRequest(f"{key}: only reference parameters can be chained ({name} is a {info.type})")
        if depth >= MAX_CHAIN:
            raise BadRequest(f"{key}: chains are limited to {MAX_CHAIN} links")
        next_name = rest.partition(".")[0].partition(":")[0]
        if modifier:
            targets: tuple[str, ...] = (_check_type_name(modifier, key),)
            if info.targets and modifier not in info.targets:
                raise BadRequest(f"{key}: {res_type}.{name} does not refer to {modifier}")
        else:
            targets = tuple(t for t in info.targets if next_name.startswith("_has") or next_name in _params(t))
            if not targets:
                raise BadRequest(f"{key}: no type {name} refers to has a parameter {next_name!r}")
        inners = [_linked(t, rest, raw, depth, key) for t in targets]
        inner = inners[0]
        # Several possible targets are searched together when the chained parameter means the same
        # there (same type and further links); others are left out.
        same = tuple(t for t, c in zip(targets, inners, strict=True)
                     if c.type == inner.type and [lk.param for lk in c.links] == [lk.param for lk in inner.links])
        return _with_link(inner, Link("chain", name, same), key, res_type)
    mod = modifier or None
    ptype = "phonetic" if name == "phonetic" and info.type == "string" else info.type  # phonetic.PARAM
    if mod is not None and mod not in MODIFIERS.get(ptype, frozenset()):
        if not (ptype == "reference" and mod in resource_types()):
            what = "the phonetic" if ptype == "phonetic" else f"a {ptype}"
            raise BadRequest(f"{name}: the modifier :{mod} does not apply to {what} parameter")
        if info.targets and mod not in info.targets:
            raise BadRequest(f"{name}: {res_type}.{name} does not refer to {mod}")
    values = split_values(raw)
    components = component_types(info) if ptype == "composite" else ()
    for v in values:
        _check_value(ptype, mod, v, name, components)
    return Criterion(name, mod, values, ptype, (), key, res_type)


def _linked(res_type: str, rest: str, raw: str, depth: int, key: str) -> Criterion:
    """The criterion at the far end of a chain or `_has`. An unknown parameter there is refused (400),
    never ignored: ignoring it would drop the whole criterion and answer with every resource (security
    case AZ4; a known server defect elsewhere)."""
    try:
        return _criterion(res_type, rest, raw, depth + 1)
    except _Unknown as unknown:
        raise BadRequest(f"{key}: {res_type} has no search parameter {unknown.name!r}") from None


def _with_link(inner: Criterion, link: Link, key: str, res_type: str) -> Criterion:
    return Criterion(inner.name, inner.modifier, inner.values, inner.type, (link, *inner.links), key,
                     inner.target)


class _Unknown(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _sort_keys(res_type: str, raw: str) -> tuple[SortKey, ...]:
    from sharedcare.fhir.search.extract import SearchParamInfo

    keys = []
    for part in raw.split(","):
        part = part.strip()
        desc = part.startswith("-")
        name = part.lstrip("-")
        if name in ("_id", "_lastUpdated"):
            keys.append(SortKey(name, "token" if name == "_id" else "date", desc))
            continue
        info = _info(res_type, name)
        if not isinstance(info, SearchParamInfo) or info.type in ("composite", "special"):
            raise BadRequest(f"_sort: {name!r} is not a parameter of {res_type} that results can be sorted by")
        keys.append(SortKey(name, info.type, desc))
    if len(keys) > 5:
        raise BadRequest("_sort takes at most 5 keys")
    return tuple(keys)


def _include(res_type: str, key: str, raw: str) -> Include:
    from sharedcare.fhir.search.extract import SearchParamInfo

    reverse = key.startswith("_revinclude")
    modifier = key.partition(":")[2]
    if modifier not in ("", "iterate", "recurse"):
        raise BadRequest(f"{key}: the only modifier is :iterate")
    iterate = bool(modifier)
    if raw == "*":
        return Include(res_type, None, None, reverse, iterate)
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise BadRequest(f"{key} takes Type:parameter or Type:parameter:targetType (got {raw[:60]!r})")
    source = _check_type_name(parts[0], key)
    if not iterate and not reverse and source != res_type:
        raise BadRequest(f"{key}={raw}: _include starts from {res_type} (use :iterate for included resources)")
    info = _info(source, parts[1])
    if not isinstance(info, SearchParamInfo) or info.type != "reference":
        raise BadRequest(f"{key}: {parts[1]!r} is not a reference parameter of {source}")
    target = _check_type_name(parts[2], key) if len(parts) == 3 else None
    return Include(source, parts[1], target, reverse, iterate)


def parse(res_type: str | None, items: list[tuple[str, str]], *, default_count: int, max_count: int,
          strict: bool = False, compartment: tuple[str, str] | None = None) -> SearchQuery:
    criteria: list[Criterion] = []
    ignored: list[str] = []
    count, total, summary_count, cursor = default_count, "estimate", False, None
    summary: str | None = None
    elements: tuple[str, ...] = ()
    sort: tuple[SortKey, ...] = ()
    includes: list[Include] = []
    for key, raw in items:
        if "\x00" in key or "\x00" in raw:  # no database text can hold it; no FHIR value contains it
            raise BadRequest("search parameters must not contain NUL characters")
        name = key.partition(":")[0]
        if name == "_count":
            count = _int_param("_count", raw)
        elif name == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise BadRequest("_total must be none, estimate or accurate")
            total = raw
        elif name == "_summary":
            if raw not in SUMMARY_MODES:
                raise BadRequest("_summary must be true, false, text, data or count")
            summary_count = raw == "count"
            summary = raw if raw in ("true", "text", "data") else None
        elif name == "_elements":
            elements = tuple(e.strip() for e in raw.split(",") if e.strip())
            if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", e) for e in elements):
                raise BadRequest("_elements takes a comma-separated list of element names")
        elif name == "_sort":
            if res_type is None:
                raise BadRequest("_sort needs a resource type")
            sort = _sort_keys(res_type, raw)
        elif name in ("_include", "_revinclude"):
            if res_type is None:
                raise BadRequest(f"{name} needs a resource type")
            includes += [_include(res_type, key, v) for v in raw.split(",")]
        elif name == "_cursor":
            cursor = raw
        elif name in RESULT_PARAMS:
            continue
        elif res_type is None:
            raise BadRequest("a search needs a resource type here")
        else:
            try:
                criteria.append(_criterion(res_type, key, raw))
            except _Unknown as unknown:
                if strict:
                    raise BadRequest(f"unknown or unsupported search parameter {unknown.name!r}") from None
                ignored.append(key)
    if count < 0:
        raise BadRequest("_count must not be negative")
    return SearchQuery(res_type, tuple(criteria), min(count, max_count), total, summary_count or count == 0,
                       cursor, tuple(ignored), sort, tuple(dict.fromkeys(includes)), summary, elements, compartment)


def _int_param(name: str, raw: str) -> int:
    if not re.fullmatch(r"\d{1,9}", raw):
        raise BadRequest(f"{name} must be a whole number")
    return int(raw)
