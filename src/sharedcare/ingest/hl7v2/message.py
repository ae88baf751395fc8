"""HL7 v2 messages as the feeds send them: split, parsed and read field by field (the lean parser on the
hot path; `python-hl7` stays for tests that check our output against an independent reader).

What real feeds do, and what this reads:
- segments end with CR (the standard), LF or CRLF; a byte-order mark may start the text;
- the encoding characters are whatever MSH-1 and MSH-2 declare (usually `|^~\\&`, some v2.7+ senders
  add `#` as the truncation character, which is kept as text);
- batch files wrap messages in FHS/BHS ... BTS/FTS (`split_batch`);
- text fields carry escape sequences (`\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`, hexadecimal `\\X0D\\`, `\\.br\\`
  for a line break), undone by `unescape` when a value is read;
- unknown segments (Z-segments and others) are kept in the raw message and simply never read.

Positions follow the standard: `seg[n]` is field n (for MSH, field 1 is the field separator itself, so
MSH-9 is `msh[9]`), repetitions from 0, components and subcomponents from 1. Reading never raises for
a missing field: it is the empty string, as HL7 treats it. `ParseError` carries the HL7 error code
(table 0357) and the position, for the ERR segment of the reply; its text never quotes the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

SEGMENT_END = re.compile(r"\r\n|\r|\n")
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
BOM = "\ufeff"

# HL7 table 0357, message error condition codes used in ERR-3.
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION_ID = "203"
UNKNOWN_KEY_IDENTIFIER = "204"
DUPLICATE_KEY_IDENTIFIER = "205"
APPLICATION_RECORD_LOCKED = "206"
APPLICATION_INTERNAL_ERROR = "207"


class ParseError(ValueError):
    """A message that cannot be read or accepted: the HL7 error code (table 0357), where (segment id
    and field number, when known) and a reason written by us, never quoting the message."""

    def __init__(self, reason: str, code: str = SEGMENT_SEQUENCE_ERROR, *, segment: str = "",
                 position: int = 0, field_no: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.segment = segment
        self.position = position  # the segment's sequence in the message, from 1
        self.field_no = field_no


@dataclass(frozen=True)
class Encoding:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def from_header(cls, line: str) -> Encoding:
        """The encoding declared by a header segment (MSH, FHS or BHS): the character after the name
        is the field separator, the next (up to) four the component, repetition, escape and
        subcomponent characters, in that order."""
        if len(line) < 4:
            raise ParseError("the header segment is too short to declare its encoding characters",
                             segment=line[:3], position=1, field_no=1)
        sep = line[3]
        if sep.isalnum() or sep in " \r\n":
            raise ParseError("the header segment does not declare a field separator", segment=line[:3],
                             position=1, field_no=1)
        declared = line[4:].split(sep, 1)[0]
        chars = list(declared[:4])
        if len(chars) < 2 or len({*chars, sep}) != len(chars) + 1 or any(c.isalnum() for c in chars):
            raise ParseError("the header segment's encoding characters (MSH-2) are not valid", DATA_TYPE_ERROR,
                             segment=line[:3], position=1, field_no=2)
        defaults = ["^", "~", "\\", "&"]
        chars += defaults[len(chars):]
        return cls(sep, chars[0], chars[1], chars[2], chars[3])


_HEX = re.compile(r"[0-9A-Fa-f]+")
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_DEFAULT_NEEDS_ESCAPE = re.compile(r"[\\|^&~" + _CONTROL + "]")


def escape(text: str, enc: Encoding | None = None) -> str:
    """Text as it may stand in a field (the inverse of `unescape`): the encoding characters and the
    escape character as `\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`, control characters (CR, LF, ...) as `\\X0D\\`."""
    enc = enc or Encoding()
    chars = enc.field + enc.component + enc.repetition + enc.escape + enc.subcomponent
    needs = _DEFAULT_NEEDS_ESCAPE if chars == "|^~\\&" else re.compile("[" + re.escape(chars) + _CONTROL + "]")
    if needs.search(text) is None:  # the usual case, checked in one pass
        return text
    codes = {enc.escape: "E", enc.field: "F", enc.component: "S", enc.subcomponent: "T", enc.repetition: "R"}
    out = []
    for ch in text:
        if ch in codes:
            out.append(f"{enc.escape}{codes[ch]}{enc.escape}")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            out.append(f"{enc.escape}X{ord(ch):02X}{enc.escape}")
        else:
            out.append(ch)
    return "".join(out)


def unescape(text: str, enc: Encoding) -> str:
    """A field's text with HL7 escape sequences undone (formatting commands and character-set
    switches are dropped; an unknown or unterminated sequence is kept as it stood)."""
    esc = enc.escape
    if esc not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != esc:
            out.append(ch)
            i += 1
            continue
        end = text.find(esc, i + 1)
        if end == -1:
            out.append(text[i:])
            break
        seq = text[i + 1:end]
        simple = {"F": enc.field, "S": enc.component, "T": enc.subcomponent, "R": enc.repetition,
                  "E": enc.escape}
        if seq in simple:
            out.append(simple[seq])
        elif seq.startswith("X") and len(seq) > 1 and len(seq) % 2 == 1 and _HEX.fullmatch(seq[1:]):
            try:
                out.append(bytes.fromhex(seq[1:]).decode("utf-8"))
            except UnicodeDecodeError:
                out.append(bytes.fromhex(seq[1:]).decode("latin-1"))
        elif seq == ".br":
            out.append("\n")
        elif seq in ("H", "N") or seq.startswith((".sp", ".in", ".ti", ".sk", ".ce", ".fi", ".nf", "C", "M", "Z")):
            pass  # highlighting, formatting and character-set switches carry no text
        else:
            out.append(text[i:end + 1])
        i = end + 1
    return "".join(out)


@dataclass(frozen=True)
class Field:
    """One field, possibly repeated; values are read through `rep`, `comp` and `value`."""

    raw: str
    enc: Encoding

    def __bool__(self) -> bool:
        return bool(self.raw) and self.raw != '""'

    @property
    def null(self) -> bool:
        """The HL7 explicit null `""`: the receiver should delete its value."""
        return self.raw == '""'

    def reps(self) -> list[Field]:
        """Each repetition as a field of its own (empty ones left out)."""
        if not self.raw:
            return []
        return [Field(r, self.enc) for r in self.raw.split(self.enc.repetition) if r]

    def comp(self, c: int = 1, s: int = 1) -> str:
        """Component c, subcomponent s of the first repetition, unescaped ('' when absent)."""
        first = self.raw.split(self.enc.repetition, 1)[0]
        parts = first.split(self.enc.component)
        if c > len(parts):
            return ""
        subs = parts[c - 1].split(self.enc.subcomponent)
        if s > len(subs):
            return ""
        value = subs[s - 1]
        return "" if value == '""' else unescape(value, self.enc)

    def components(self) -> list[str]:
        """Every component of the first repetition, unescaped (subcomponents joined as sent)."""
        first = self.raw.split(self.enc.repetition, 1)[0]
        return [unescape(p, self.enc) for p in first.split(self.enc.component)]

    @property
    def value(self) -> str:
        """The whole first repetition as text, unescaped (a field of one component)."""
        return self.comp(1)

    @property
    def text(self) -> str:
        """The first repetition unescaped, separators and all (for free text fields)."""
        first = self.raw.split(self.enc.repetition, 1)[0]
        return "" if first == '""' else unescape(first, self.enc)


@dataclass
class Segment:
    name: str
    fields: list[str]  # fields[0] is the name; for MSH fields[1] is the field separator
    enc: Encoding
    position: int  # sequence in the message, from 1

    def __getitem__(self, n: int) -> Field:
        return Field(self.fields[n] if 0 < n < len(self.fields) else "", self.enc)

    def __len__(self) -> int:
        return len(self.fields) - 1


def _segment(line: str, enc: Encoding, position: int) -> Segment:
    name = line[:3]
    if name in ("MSH", "FHS", "BHS"):
        rest = line[4:].split(enc.field)
        return Segment(name, [name, enc.field, *rest], enc, position)
    return Segment(name, line.split(enc.field), enc, position)


@dataclass
class Message:
    """One HL7 v2 message: its segments in order and the header read once."""

    text: str  # the message as received (segments joined by CR), for the inbox and audit of the feed
    segments: list[Segment]
    enc: Encoding = field(default_factory=Encoding)

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        for s in self.segments:
            if s.name == name:
                return s
        return None

    @cached_property
    def message_type(self) -> str:
        return self.msh[9].comp(1).upper()

    @cached_property
    def trigger(self) -> str:
        return self.msh[9].comp(2).upper()

    @cached_property
    def structure(self) -> str:
        return self.msh[9].comp(3).upper()

    @property
    def control_id(self) -> str:
        return self.msh[10].value

    @property
    def processing_id(self) -> str:
        return self.msh[11].comp(1)

    @property
    def version(self) -> str:
        return self.msh[12].comp(1)

    @property
    def sending_application(self) -> str:
        return self.msh[3].comp(1)

    @property
    def sending_facility(self) -> str:
        return self.msh[4].comp(1)

    @property
    def sent_at(self) -> str:
        return self.msh[7].comp(1)

    @property
    def accept_ack_type(self) -> str:
        """MSH-15: AL, NE, ER or SU in enhanced mode; empty in original mode."""
        return self.msh[15].value.upper()

    @property
    def application_ack_type(self) -> str:
        return self.msh[16].value.upper()

    def groups(self, starter: str, members: tuple[str, ...],
               closers: tuple[str, ...] = ("PID", "PV1", "ORC", "SCH", "RXA", "SPM")) -> list[list[Segment]]:
        """Runs of segments that each begin with `starter`, holding the `members` that follow it until
        the next starter or a `closers` segment (e.g. OBR groups with their OBX and NTE, up to the
        next ORC or specimen (SPM); other segments in between (TQ1, Z-segments) are passed over."""
        out: list[list[Segment]] = []
        open_group = False
        for s in self.segments:
            if s.name == starter:
                out.append([s])
                open_group = True
            elif s.name in closers:
                open_group = False
            elif open_group and s.name in members:
                out[-1].append(s)
        return out


def lines(text: str) -> list[str]:
    """The segments of a text: any segment end, a leading byte-order mark and blank lines dropped."""
    if text.startswith(BOM):
        text = text[1:]
    return [ln for ln in SEGMENT_END.split(text) if ln.strip()]


def parse(text: str) -> Message:
    """One message. Raises ParseError when it does not start with a well-formed MSH, or a segment
    has no valid name."""
    segs = lines(text)
    if not segs:
        raise ParseError("the message is empty", REQUIRED_FIELD_MISSING, segment="MSH", position=1)
    head = segs[0]
    if not head.startswith("MSH"):
        raise ParseError("the message does not begin with an MSH segment", REQUIRED_FIELD_MISSING, segment="MSH",
                         position=1)
    enc = Encoding.from_header(head)
    out: list[Segment] = []
    for i, line in enumerate(segs, 1):
        name = line[:3]
        if not _SEGMENT_NAME.fullmatch(name) or (len(line) > 3 and line[3] != enc.field):
            raise ParseError(f"segment {i} has no valid segment name", SEGMENT_SEQUENCE_ERROR, position=i)
        if name == "MSH" and i > 1:
            raise ParseError(f"segment {i} is a second MSH: one message at a time", SEGMENT_SEQUENCE_ERROR,
                             segment="MSH", position=i)
        out.append(_segment(line, enc, i))
    return Message("\r".join(segs) + "\r", out, enc)


@dataclass
class Batch:
    """What a batch or file wrapper said (FHS/BHS), and the messages inside it, as texts."""

    messages: list[str]
    header: Segment | None = None  # the FHS, or the BHS when there is no FHS
    declared_count: int | None = None  # BTS-1, when given


def split_batch(text: str) -> Batch:
    """The messages of a text that may be one message or a batch or file (FHS/BHS ... BTS/FTS).

    Each message runs from its MSH to the next MSH or wrapper segment. A count declared in BTS-1 that
    does not match is a ParseError, since messages were lost on the way."""
    segs = lines(text)
    if not segs:
        raise ParseError("the batch is empty", REQUIRED_FIELD_MISSING)
    header: Segment | None = None
    declared: int | None = None
    messages: list[str] = []
    current: list[str] = []
    for i, line in enumerate(segs, 1):
        name = line[:3]
        if name in ("FHS", "BHS"):
            if current:
                messages.append("\r".join(current) + "\r")
                current = []
            if header is None or name == "FHS":
                header = _segment(line, Encoding.from_header(line), i)
        elif name in ("BTS", "FTS"):
            if current:
                messages.append("\r".join(current) + "\r")
                current = []
            if name == "BTS":
                enc = header.enc if header is not None else Encoding()
                count = _segment(line, enc, i)[1].value
                if count.isdigit():
                    declared = (declared or 0) + int(count)
        elif name == "MSH":
            if current:
                messages.append("\r".join(current) + "\r")
            current = [line]
        elif current:
            current.append(line)
        else:
            raise ParseError(f"segment {i} comes before any MSH", SEGMENT_SEQUENCE_ERROR, position=i)
    if current:
        messages.append("\r".join(current) + "\r")
    if declared is not None and declared != len(messages):
        raise ParseError(f"the batch trailer declares {declared} messages but {len(messages)} were found",
                         SEGMENT_SEQUENCE_ERROR, segment="BTS")
    return Batch(messages, header, declared)


_LATIN1 = ("8859/1", "ISO-8859-1", "ISO_IR 100", "ISO IR100", "8859/15")


def decode(payload: bytes) -> str:
    """A message's bytes as text, in the character set MSH-18 declares (UTF-8 when it says UNICODE
    UTF-8, or nothing and the bytes are UTF-8; ISO 8859-1 when it says so or the bytes are not UTF-8)."""
    if payload.startswith(b"\xef\xbb\xbf"):
        payload = payload[3:]
    head = payload[:1024].split(b"\r", 1)[0].split(b"\n", 1)[0]
    charset = ""
    if head.startswith(b"MSH") and len(head) > 3:
        parts = head.split(head[3:4])
        charset = parts[17].decode("ascii", "replace").strip().upper() if len(parts) > 17 else ""
    if charset in _LATIN1:
        return payload.decode("latin-1")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")
