"""A brute-force FHIR R4 search evaluator: the test oracle for the search engine.

Written from the R4 search page (https://hl7.org/fhir/R4/search.html) and nothing in src/: it loads
the official SearchParameter definitions, evaluates each parameter's FHIRPath expression on every
resource with fhirpathpy, and applies the matching rules to what it finds. It is slow on purpose (no
index, no SQL): its only job is to be obviously right on the data it is given.

    registry = Registry.load(path_to_search_parameters_json)
    oracle = Oracle(registry, resources, base_url="http://testserver/fhir")
    oracle.search("Observation", [("code", "http://loinc.org|8302-2"), ("value-quantity", "gt150")])

Resources are dicts as the server stores them: server ids, references rewritten to `Type/id`. Load
JSON with `parse_float=decimal.Decimal` so that decimals keep their precision.
"""

from __future__ import annotations

import calendar
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fhirpathpy import compile as fp_compile
from fhirpathpy.models import models

MODEL = models["r4"]

# Parameters that shape the result rather than select resources.
RESULT_PARAMETERS = frozenset({
    "_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_format", "_pretty",
    "_contained", "_containedType", "_cursor",
})
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
MONEY_SYSTEM = "urn:iso:std:iso:4217"
HUMAN_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")

# Instants as whole microseconds since 1970 (UTC); open ends of a Period are these two.
LOWEST = -(10**20)
HIGHEST = 10**20


class Unsupported(Exception):
    """The oracle does not know how to evaluate this search (so a test must not generate it)."""


# -- text -----------------------------------------------------------------------------------------

def normalise(text: str) -> str:
    """R4 string matching ignores case and accents: NFKD, drop combining marks, casefold, one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def split_unescaped(text: str, sep: str) -> list[str]:
    """Split on `sep` where it is not escaped by a backslash; escapes are kept for a later split."""
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# -- dates ----------------------------------------------------------------------------------------

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def date_range(text: str) -> tuple[int, int]:
    """The instants a FHIR date, dateTime or instant stands for, as [low, high) in microseconds (UTC).

    The precision given is the width: `2020` is the year, `2020-03` the month, a time with seconds that
    second, with n fraction digits that 10^-n of a second. A value without offset is taken as UTC."""
    m = _DATE.match(text.strip())
    if not m:
        raise ValueError(f"not a FHIR date: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    y = int(year)
    if month is None:
        return _micros(y, 1, 1), _micros(y + 1, 1, 1)
    mo = int(month)
    if not 1 <= mo <= 12:
        raise ValueError(f"not a month: {text!r}")
    if day is None:
        return _micros(y, mo, 1), _micros(y + 1, 1, 1) if mo == 12 else _micros(y, mo + 1, 1)
    d = int(day)
    if not 1 <= d <= calendar.monthrange(y, mo)[1]:
        raise ValueError(f"not a day: {text!r}")
    if hour is None:
        low = _micros(y, mo, d)
        return low, low + 86_400_000_000
    h, mi = int(hour), int(minute)
    s = int(second) if second is not None else 0
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(f"not a time: {text!r}")
    low = _micros(y, mo, d, h, mi, s)
    if second is None:
        width = 60_000_000
    elif fraction is None:
        width = 1_000_000
    else:
        digits = min(len(fraction), 6)
        low += int(fraction[:6].ljust(6, "0"))
        width = 10 ** (6 - digits)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        low -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * 1_000_000
    return low, low + width


def _micros(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1_000_000


def value_ranges(value: Any) -> list[tuple[int, int]]:
    """The ranges a date-typed element contributes: a date/dateTime/instant, a Period or a Timing."""
    if isinstance(value, str):
        try:
            return [date_range(value)]
        except ValueError:
            return []
    if isinstance(value, dict):
        if "event" in value or "repeat" in value or "code" in value:  # Timing: its events
            return [r for e in value.get("event", []) for r in value_ranges(e)]
        if "start" in value or "end" in value:  # Period
            try:
                low = date_range(value["start"])[0] if value.get("start") else LOWEST
                high = date_range(value["end"])[1] if value.get("end") else HIGHEST
            except ValueError:
                return []
            return [(low, high)]
    return []


def date_matches(prefix: str, target: tuple[int, int], search: tuple[int, int]) -> bool:
    """R4 date comparison with both sides as [low, high) ranges."""
    lo, hi = target
    slo, shi = search
    eq = slo <= lo and hi <= shi
    if prefix == "eq":
        return eq
    if prefix == "ne":
        return not eq
    if prefix == "gt":
        return hi > shi
    if prefix == "lt":
        return lo < slo
    if prefix == "ge":
        return hi > shi or eq
    if prefix == "le":
        return lo < slo or eq
    if prefix == "sa":
        return lo >= shi
    if prefix == "eb":
        return hi <= slo
    raise Unsupported(f"date prefix {prefix}")


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit() or value[2] in "-."):
        return value[:2], value[2:]
    return "eq", value


# -- numbers --------------------------------------------------------------------------------------

def parse_number(text: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a number: {text!r}")
    return number


def number_matches(prefix: str, value: Any, text: str) -> bool:
    """`100` stands for [99.5, 100.5) under eq/ne; the other prefixes compare with the number itself."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
        return False
    v = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    n = parse_number(text)
    exponent = n.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    in_range = n - half <= v < n + half
    if prefix == "eq":
        return in_range
    if prefix == "ne":
        return not in_range
    if prefix == "gt":
        return v > n
    if prefix == "lt":
        return v < n
    if prefix == "ge":
        return v >= n
    if prefix == "le":
        return v <= n
    if prefix == "sa":
        return v > n
    if prefix == "eb":
        return v < n
    raise Unsupported(f"number prefix {prefix}")


# -- references -----------------------------------------------------------------------------------

_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]+$")


def reference_target(value: Any, base: str) -> tuple[str, str] | None:
    """(type, id) of a literal reference `Type/id` (also absolute on our base, or with _history)."""
    ref = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(ref, str):
        return None
    if ref.startswith(base + "/"):
        ref = ref[len(base) + 1:]
    parts = ref.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        parts = parts[:2]
    if len(parts) == 2 and _TYPE_NAME.match(parts[0]) and parts[1]:
        return parts[0], parts[1]
    return None


# -- the definitions ------------------------------------------------------------------------------

def split_union(expression: str) -> list[str]:
    """The top-level `|` alternatives of a FHIRPath expression."""
    parts: list[str] = []
    buf: list[str] = []
    depth = 0
    quoted = False
    for ch in expression:
        if quoted:
            quoted = ch != "'"
        elif ch == "'":
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


def _root(part: str) -> str:
    return re.split(r"[.\s)]", part.lstrip("("), maxsplit=1)[0]


def rewrite(expression: str) -> str:
    """Make an R4 search expression evaluable by fhirpathpy on one resource.

    `x as T` and `x.as(T)` become `x.ofType(T)` (fhirpathpy insists on a singleton for `as`, the search
    meaning is a filter); `where(resolve() is T)` looks at the reference text (`T/id`, or a URL ending so)."""
    out = re.sub(r"\s+as\s+([A-Za-z]+)", r".ofType(\1)", expression)
    out = re.sub(r"\.as\(([A-Za-z]+)\)", r".ofType(\1)", out)
    out = out.replace("ofType(DateTime)", "ofType(dateTime)")
    return re.sub(r"\.where\(resolve\(\) is ([A-Za-z]+)\)",
                  r".where(reference.matches('^(.*/)?\1/[^/]+(/_history/[^/]+)?$'))", out)


def for_type(expression: str, res_type: str) -> str | None:
    """The parts of a (multi-type) expression that apply to `res_type`."""
    kept = []
    for part in split_union(expression):
        root = _root(part)
        if root in ("Resource", "DomainResource"):
            part = part.replace(root, res_type, 1)
            root = res_type
        if root == res_type:
            kept.append(rewrite(part))
    return " | ".join(kept) if kept else None


@dataclass(frozen=True)
class Component:
    param: Param
    expression: str
    evaluate: Callable[..., list[Any]]


@dataclass(frozen=True)
class Param:
    code: str
    type: str
    url: str
    expression: str | None
    targets: tuple[str, ...]
    evaluate: Callable[..., list[Any]] | None
    components: tuple[Component, ...] = ()


def _compile_union(expression: str, options: dict[str, Any] | None) -> Callable[..., list[Any]]:
    """Each `|` part on its own, results concatenated: fhirpathpy's union drops the type path of the
    nodes it returns, which composites need to navigate into choice elements (`value.ofType(...)`)."""
    parts = [fp_compile(p, MODEL, options) for p in split_union(expression)]

    def evaluate(resource: Any) -> list[Any]:
        return [v for part in parts for v in part(resource)]
    return evaluate


class Registry:
    """The R4 SearchParameter definitions, by resource type and code."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.raw: list[dict[str, Any]] = [e["resource"] for e in bundle.get("entry", [])]
        self.by_url = {p["url"]: p for p in self.raw}
        self._cache: dict[tuple[str, str], Param | None] = {}

    @classmethod
    def load(cls, path: Path) -> Registry:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def _definition(self, res_type: str, code: str) -> dict[str, Any] | None:
        for p in self.raw:
            if p.get("code") == code and (res_type in p.get("base", []) or
                                          any(b in ("Resource", "DomainResource") for b in p.get("base", []))):
                return p
        return None

    def param(self, res_type: str, code: str) -> Param | None:
        key = (res_type, code)
        if key not in self._cache:
            found = self._definition(res_type, code)
            self._cache[key] = None if found is None else self._build(found, res_type)
        return self._cache[key]

    def codes(self, res_type: str) -> list[str]:
        return sorted({p["code"] for p in self.raw if res_type in p.get("base", [])
                       or any(b in ("Resource", "DomainResource") for b in p.get("base", []))})

    def _build(self, p: dict[str, Any], res_type: str) -> Param:
        expression = for_type(p["expression"], res_type) if p.get("expression") else None
        composite = p["type"] == "composite"
        evaluate = None
        if expression:
            evaluate = _compile_union(expression, {"returnRawData": True} if composite else None)
        components: list[Component] = []
        if composite:
            for c in p.get("component", []):
                sub = self.by_url[c["definition"]]
                sub_param = Param(sub["code"], sub["type"], sub["url"], None, tuple(sub.get("target", [])), None)
                expr = rewrite(c["expression"])
                components.append(Component(sub_param, expr, _compile_union(expr, None)))
        return Param(p["code"], p["type"], p["url"], expression, tuple(p.get("target", [])), evaluate,
                     tuple(components))


# -- the matchers ---------------------------------------------------------------------------------

Matcher = Callable[[Any], bool]


def _strings(value: Any) -> list[str]:
    """The strings a string-typed value matches on: each part of a HumanName or Address."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        keys = HUMAN_NAME_PARTS if any(k in value for k in ("family", "given", "prefix", "suffix")) \
            else ADDRESS_PARTS
        out: list[str] = []
        for key in keys:
            item = value.get(key)
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, list):
                out.extend(x for x in item if isinstance(x, str))
        return out
    return []


def string_matcher(modifier: str | None, raw: str) -> Matcher:
    text = unescape(raw)
    if modifier == "exact":
        return lambda v: any(s == text for s in _strings(v))
    wanted = normalise(text)
    if modifier == "contains":
        return lambda v: any(wanted in normalise(s) for s in _strings(v))
    if modifier is None:
        return lambda v: any(normalise(s).startswith(wanted) for s in _strings(v))
    raise Unsupported(f"string modifier :{modifier}")


def token_pairs(value: Any) -> list[tuple[str | None, str | None]]:
    """(system, code) pairs of a token-typed value."""
    if isinstance(value, bool):
        return [(None, "true" if value else "false")]
    if isinstance(value, (str, int, Decimal)):
        return [(None, str(value))]
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
        return [(c.get("system"), c.get("code")) for c in value.get("coding", []) if isinstance(c, dict)]
    if "value" in value:  # Identifier or ContactPoint
        if value.get("system") in CONTACT_SYSTEMS and "type" not in value:
            return [(None, str(value["value"]))]
        return [(value.get("system"), str(value["value"]))]
    if "code" in value or "system" in value:  # Coding
        return [(value.get("system"), value.get("code"))]
    return []


def token_texts(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    if "coding" in value or ("text" in value and "value" not in value):
        if isinstance(value.get("text"), str):
            out.append(value["text"])
        out.extend(c["display"] for c in value.get("coding", []) if isinstance(c.get("display"), str))
    elif "value" in value:
        text = (value.get("type") or {}).get("text")
        if isinstance(text, str):
            out.append(text)
    elif isinstance(value.get("display"), str):
        out.append(value["display"])
    return out


def token_matcher(modifier: str | None, raw: str) -> Matcher:
    if modifier == "text":
        wanted = normalise(unescape(raw))
        return lambda v: any(normalise(t).startswith(wanted) for t in token_texts(v))
    if modifier == "of-type":
        parts = [unescape(p) for p in split_unescaped(raw, "|")]
        if len(parts) != 3:
            raise Unsupported(":of-type needs system|code|value")
        t_system, t_code, t_value = parts

        def of_type(v: Any) -> bool:
            if not isinstance(v, dict) or v.get("value") != t_value:
                return False
            codings = (v.get("type") or {}).get("coding", [])
            return any(c.get("system") == t_system and c.get("code") == t_code for c in codings)
        return of_type
    if modifier not in (None, "not"):
        raise Unsupported(f"token modifier :{modifier}")
    parts = split_unescaped(raw, "|")
    if len(parts) == 1:
        code = unescape(parts[0])
        return lambda v: any(c == code for _, c in token_pairs(v))
    if len(parts) != 2:
        raise Unsupported(f"token value {raw!r}")
    system, code = unescape(parts[0]), unescape(parts[1])
    if system == "":
        return lambda v: any(s is None and c == code for s, c in token_pairs(v))
    if code == "":
        return lambda v: any(s == system for s, _ in token_pairs(v))
    return lambda v: any(s == system and c == code for s, c in token_pairs(v))


def date_matcher(modifier: str | None, raw: str) -> Matcher:
    if modifier is not None:
        raise Unsupported(f"date modifier :{modifier}")
    prefix, text = split_prefix(unescape(raw))
    search = date_range(text)
    return lambda v: any(date_matches(prefix, r, search) for r in value_ranges(v))


def number_matcher(modifier: str | None, raw: str) -> Matcher:
    if modifier is not None:
        raise Unsupported(f"number modifier :{modifier}")
    prefix, text = split_prefix(unescape(raw))
    parse_number(text)
    return lambda v: number_matches(prefix, v, text)


def quantity_matcher(modifier: str | None, raw: str) -> Matcher:
    if modifier is not None:
        raise Unsupported(f"quantity modifier :{modifier}")
    parts = [unescape(p) for p in split_unescaped(raw, "|")]
    if len(parts) not in (1, 3):
        raise Unsupported(f"quantity value {raw!r}")
    prefix, text = split_prefix(parts[0])
    parse_number(text)
    system, code = (parts[1], parts[2]) if len(parts) == 3 else ("", "")

    def match(v: Any) -> bool:
        if not isinstance(v, dict) or "value" not in v:
            return False
        if "currency" in v:  # Money
            q_system, q_code, q_unit = MONEY_SYSTEM, v.get("currency"), None
        else:
            q_system, q_code, q_unit = v.get("system"), v.get("code"), v.get("unit")
        if system and (q_system != system or q_code != code):
            return False
        if not system and code and code not in (q_code, q_unit):
            return False
        return number_matches(prefix, v["value"], text)
    return match


def uri_matcher(modifier: str | None, raw: str) -> Matcher:
    text = unescape(raw)
    if modifier is None:
        return lambda v: isinstance(v, str) and v == text
    if modifier == "below":
        return lambda v: isinstance(v, str) and v.startswith(text)
    if modifier == "above":
        return lambda v: isinstance(v, str) and text.startswith(v)
    raise Unsupported(f"uri modifier :{modifier}")


def reference_matcher(modifier: str | None, raw: str, base: str) -> Matcher:
    text = unescape(raw)
    if modifier == "identifier":
        inner = token_matcher(None, raw)
        return lambda v: isinstance(v, dict) and isinstance(v.get("identifier"), dict) and inner(v["identifier"])
    if modifier is not None and not _TYPE_NAME.match(modifier):
        raise Unsupported(f"reference modifier :{modifier}")
    if text.startswith(base + "/"):
        text = text[len(base) + 1:]
    elif "://" in text or text.startswith("urn:"):  # some other absolute URL or a canonical
        return lambda v: (isinstance(v, str) and v == text) or (isinstance(v, dict) and v.get("reference") == text)
    parts = text.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        parts = parts[:2]
    if len(parts) == 2:
        want_type, want_id = parts
    elif len(parts) == 1:
        want_type, want_id = None, parts[0]
    else:
        return lambda v: False

    def match(v: Any) -> bool:
        target = reference_target(v, base)
        if target is None:
            return False
        t, i = target
        return i == want_id and want_type in (None, t) and modifier in (None, t)
    return match


# -- the oracle -----------------------------------------------------------------------------------

class Oracle:
    """Evaluates searches by brute force over a fixed list of resources."""

    def __init__(self, registry: Registry, resources: Iterable[dict[str, Any]],
                 base_url: str = "http://testserver/fhir") -> None:
        self.registry = registry
        self.base = base_url.rstrip("/")
        self.by_type: dict[str, dict[str, dict[str, Any]]] = {}
        for r in resources:
            self.by_type.setdefault(r["resourceType"], {})[r["id"]] = r
        self._values: dict[tuple[str, str, str], list[Any]] = {}

    # values ----------------------------------------------------------------------------------------
    def values(self, res_type: str, code: str, res_id: str) -> list[Any]:
        """What the parameter's expression yields on the resource (references without a target dropped)."""
        key = (res_type, code, res_id)
        if key not in self._values:
            param = self._param(res_type, code)
            if param.evaluate is None:
                raise Unsupported(f"{res_type}.{code} has no expression")
            found = param.evaluate(self.by_type[res_type][res_id])
            if param.type == "reference":
                found = [v for v in found if isinstance(v, str) or
                         (isinstance(v, dict) and ("reference" in v or "identifier" in v))]
            self._values[key] = found
        return self._values[key]

    def _param(self, res_type: str, code: str) -> Param:
        param = self.registry.param(res_type, code)
        if param is None:
            raise Unsupported(f"no parameter {code} on {res_type}")
        return param

    def ids(self, res_type: str) -> list[str]:
        return list(self.by_type.get(res_type, {}))

    # searching -------------------------------------------------------------------------------------
    def search(self, res_type: str, params: Sequence[tuple[str, str]], strict: bool = False) -> set[str]:
        """Ids of the resources of `res_type` that match every (name, value) pair."""
        result = set(self.ids(res_type))
        for name, value in params:
            if name.split(":", 1)[0] in RESULT_PARAMETERS:
                continue
            result &= self.criterion(res_type, name, value, strict)
        return result

    def criterion(self, res_type: str, key: str, raw: str, strict: bool = False) -> set[str]:
        """Ids matching one parameter occurrence (its comma-separated values ORed)."""
        if key.startswith("_has:"):
            return self._reverse_chain(res_type, key[len("_has:"):], raw, strict)
        if "." in key:
            head, rest = key.split(".", 1)
            return self._chain(res_type, head, rest, raw, strict)
        name, _, modifier_text = key.partition(":")
        modifier = modifier_text or None
        param = self.registry.param(res_type, name)
        if param is None:
            if strict:
                raise Unsupported(f"unknown parameter {name} on {res_type}")
            return set(self.ids(res_type))
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise Unsupported(f":missing={raw}")
            want_missing = raw == "true"
            return {i for i in self.ids(res_type) if (not self.values(res_type, name, i)) == want_missing}
        if param.type == "composite":
            return self._composite(res_type, param, modifier, raw)
        matchers = [self.matcher(param, modifier, v) for v in split_unescaped(raw, ",")]
        hits = {i for i in self.ids(res_type)
                if any(m(v) for v in self.values(res_type, name, i) for m in matchers)}
        if modifier == "not":
            if param.type != "token":
                raise Unsupported(":not on a non-token parameter")
            return set(self.ids(res_type)) - hits
        return hits

    def matcher(self, param: Param, modifier: str | None, raw: str) -> Matcher:
        kind = param.type
        if kind == "string":
            return string_matcher(modifier, raw)
        if kind == "token":
            return token_matcher(modifier, raw)
        if kind == "date":
            return date_matcher(modifier, raw)
        if kind == "number":
            return number_matcher(modifier, raw)
        if kind == "quantity":
            return quantity_matcher(modifier, raw)
        if kind == "uri":
            return uri_matcher(modifier, raw)
        if kind == "reference":
            return reference_matcher(modifier, raw, self.base)
        raise Unsupported(f"parameter type {kind}")

    def _composite(self, res_type: str, param: Param, modifier: str | None, raw: str) -> set[str]:
        if modifier is not None:
            raise Unsupported(f"composite modifier :{modifier}")
        alternatives: list[list[Matcher]] = []
        for value in split_unescaped(raw, ","):
            parts = split_unescaped(value, "$")
            if len(parts) != len(param.components):
                raise Unsupported(f"{param.code} takes {len(param.components)} parts: {value!r}")
            alternatives.append([self.matcher(c.param, None, p) for c, p in zip(param.components, parts, strict=True)])
        hits = set()
        for i in self.ids(res_type):
            for node in self.values(res_type, param.code, i):
                found = [c.evaluate(node) for c in param.components]
                if any(all(any(m(v) for v in vals) for m, vals in zip(ms, found, strict=True)) for ms in alternatives):
                    hits.add(i)
                    break
        return hits

    def _chain(self, res_type: str, head: str, rest: str, raw: str, strict: bool) -> set[str]:
        name, _, modifier = head.partition(":")
        param = self._param(res_type, name)
        if param.type != "reference":
            raise Unsupported(f"chain through non-reference {name}")
        types = (modifier,) if modifier else param.targets
        inner_name = re.split(r"[:.]", rest, maxsplit=1)[0]
        inner: dict[str, set[str]] = {}
        for t in types:
            if inner_name.startswith("_has") or self.registry.param(t, inner_name) is not None:
                inner[t] = self.criterion(t, rest, raw, strict)
        hits = set()
        for i in self.ids(res_type):
            for v in self.values(res_type, name, i):
                target = reference_target(v, self.base)
                if target is not None and target[1] in inner.get(target[0], ()):
                    hits.add(i)
                    break
        return hits

    def _reverse_chain(self, res_type: str, spec: str, raw: str, strict: bool) -> set[str]:
        parts = spec.split(":", 2)
        if len(parts) != 3:
            raise Unsupported(f"_has:{spec}")
        other, ref_name, rest = parts
        self._param(other, ref_name)
        hits = set()
        for j in self.criterion(other, rest, raw, strict):
            for v in self.values(other, ref_name, j):
                target = reference_target(v, self.base)
                if target is not None and target[0] == res_type and target[1] in self.by_type.get(res_type, {}):
                    hits.add(target[1])
        return hits

    # sorting ---------------------------------------------------------------------------------------
    def sort_key(self, res_type: str, code: str, res_id: str, descending: bool) -> Any:
        """The value a resource sorts by: its lowest value ascending, its highest descending; None if none."""
        param = self._param(res_type, code)
        keys: list[Any] = []
        for v in self.values(res_type, code, res_id):
            if param.type == "date":
                keys.extend(hi if descending else lo for lo, hi in value_ranges(v))
            elif param.type == "string":
                keys.extend(normalise(s) for s in _strings(v))
            elif param.type == "number" and isinstance(v, (int, Decimal)) and not isinstance(v, bool):
                keys.append(Decimal(v))
            elif param.type == "quantity" and isinstance(v, dict) and "value" in v:
                keys.append(Decimal(v["value"]))
            elif param.type == "token":
                keys.extend(c for _, c in token_pairs(v) if c is not None)
            elif param.type == "uri" and isinstance(v, str):
                keys.append(v)
        if not keys:
            return None
        return max(keys) if descending else min(keys)
