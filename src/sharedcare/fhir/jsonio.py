"""FHIR JSON in and out, with decimals kept exactly as sent (1.50 stays 1.50 on every path).

`loads` turns every JSON number with a fraction or exponent into a `FhirDecimal`: a float (so
arithmetic and comparisons work) that remembers the literal it was written as. `dumps` writes that
literal back unchanged. Integers stay `int`. Anything that edits JSON (meta, `_elements`, XML,
redaction) must go through these two functions, never plain `json`/`orjson` parsing.

Limits guard the process against hostile input: nesting depth is bounded, and malformed UTF-8 or
JSON is a `BadRequest`, never an unhandled exception.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from sharedcare.errors import BadRequest

MAX_DEPTH = 64


class FhirDecimal(float):
    """A float that remembers its JSON literal."""

    __slots__ = ("literal",)
    literal: str

    def __new__(cls, literal: str) -> FhirDecimal:
        obj = float.__new__(cls, literal)
        obj.literal = literal
        return obj

    def __repr__(self) -> str:
        return f"FhirDecimal({self.literal!r})"

    def __str__(self) -> str:
        # float's str() would go through __repr__; the literal is the value's own text.
        return self.literal

    def __reduce__(self) -> tuple[type[FhirDecimal], tuple[str]]:
        # copy/deepcopy/pickle must keep the literal, not go through the float value.
        return (FhirDecimal, (self.literal,))


def _default(obj: Any) -> Any:
    if isinstance(obj, FhirDecimal):
        return orjson.Fragment(obj.literal)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


# The depth check works on bytes: drop escape sequences, keep only quotes and brackets (one C pass),
# then drop what is inside string literals: a bracket is inside a string when an odd number of quotes
# precede it, so adjacent quote pairs (strings with no bracket in them, nearly all) can go first
# without changing that parity, and the few quotes left split the rest. What remains is the nesting,
# one byte per bracket. Each pass of _LEAVES then removes the innermost pairs, one level of every
# branch (a regex pass does not rescan what it produced), so the nesting is at most `limit` deep when
# `limit` passes empty it.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_LEAVES = re.compile(rb"\[\]|\{\}")


def _depth_ok(data: bytes, limit: int) -> bool:
    """Is the JSON text nested at most `limit` deep? Checked before parsing, so hostile nesting never
    reaches the parser's recursion. (Text that is not well-formed JSON may be misjudged either way;
    the parser refuses it anyway.)"""
    brackets = _ESCAPE.sub(b"", data).translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in brackets:
        brackets = b"".join(brackets.split(b'"')[0::2])
    for _ in range(limit):
        if not brackets:
            return True
        brackets = _LEAVES.sub(b"", brackets)
    # Still nested after `limit` levels: deeper, unless nothing pairs up any more (malformed text).
    return not brackets or _LEAVES.search(brackets) is None


# msgspec parses about three times faster than the standard library and hands every number with a
# fraction or exponent to FhirDecimal as its literal. Integers stay exact Python ints at any size; the
# few beyond 64 bits, which orjson cannot write, are written from their digits by `dumps` (the text of
# a JSON integer is exactly str() of its value).
_decoder = msgspec.json.Decoder(float_hook=FhirDecimal)
_BOM = b"\xef\xbb\xbf"


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse FHIR JSON exactly. Raises BadRequest for anything that is not well-formed JSON."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8 (byte {exc.start})") from None
    if data.startswith(_BOM):
        data = data[3:]
    # Depth is only scanned when brackets may be many (large bodies always have many).
    if (len(data) > 16384 or data.count(b"{") + data.count(b"[") > max_depth) and not _depth_ok(data, max_depth):
        raise BadRequest(f"JSON nested deeper than {max_depth} levels")
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:
        raise BadRequest(f"body is not valid JSON: {str(exc).split(':')[0]}") from None
    except RecursionError:
        raise BadRequest("JSON nested too deeply") from None


def dumps(obj: Any) -> bytes:
    """Serialise compactly; FhirDecimal values are written with their original literal."""
    try:
        return orjson.dumps(obj, default=_default)
    except orjson.JSONEncodeError:
        # An integer beyond 64 bits (a valid FHIR decimal): write it from its digits and try again.
        return orjson.dumps(_big_ints_as_literals(obj), default=_default)


def _big_ints_as_literals(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _big_ints_as_literals(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_big_ints_as_literals(v) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool) and not -2**63 <= obj < 2**64:
        return orjson.Fragment(str(obj))
    return obj
