"""Acknowledgements (HL7 v2 chapter 2): what the listener answers each message with.

Original mode (MSH-15 and MSH-16 empty): AA once the message is committed to the inbox, AE when it
could not be stored (the sender must send it again), AR when it will never be accepted (wrong
sender, unsupported type or version, broken structure). Enhanced mode (MSH-15 given): the commit
acknowledgement CA, CE or CR, sent when MSH-15 asks for it (AL always, ER only on error, SU only on
success, NE never).

The ERR segment carries the reason both ways senders read it: ERR-1 as v2.4 and earlier define it
(segment^sequence^field^code) and ERR-2 to ERR-4 as v2.5 and later do (location, HL7 table 0357 code,
severity). MSA-3 repeats the reason as text. No reason ever quotes the message.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from sharedcare.ingest.hl7v2.datatypes import LONDON
from sharedcare.ingest.hl7v2.message import Encoding, Message, ParseError, escape

APPLICATION, FACILITY = "SHAREDCARE", "LONDON"
ERROR_TEXT = {"100": "Segment sequence error", "101": "Required field missing", "102": "Data type error",
              "103": "Table value not found", "200": "Unsupported message type", "201": "Unsupported event code",
              "202": "Unsupported processing id", "203": "Unsupported version id", "204": "Unknown key identifier",
              "205": "Duplicate key identifier", "206": "Application record locked",
              "207": "Application internal error"}
ACCEPT, ERROR, REJECT = "A", "E", "R"
_counter = itertools.count(1)


def enhanced(msg: Message | None) -> bool:
    return msg is not None and msg.accept_ack_type in ("AL", "NE", "ER", "SU")


def wanted(msg: Message | None, outcome: str) -> bool:
    """Whether the sender asked for an acknowledgement of this outcome (enhanced mode's MSH-15)."""
    if not enhanced(msg):
        return True
    assert msg is not None
    kind = msg.accept_ack_type
    return kind == "AL" or (kind == "ER" and outcome != ACCEPT) or (kind == "SU" and outcome == ACCEPT)


def code(msg: Message | None, outcome: str) -> str:
    """AA/AE/AR in original mode, CA/CE/CR in enhanced mode."""
    return ("C" if enhanced(msg) else "A") + outcome


def ack(msg: Message | None, outcome: str, error: ParseError | None = None, *, at: datetime | None = None) -> str:
    """The acknowledgement of `msg` (None: a message too broken to read its header)."""
    enc = msg.enc if msg is not None else Encoding()
    sep = enc.field
    when = (at or datetime.now(UTC)).astimezone(LONDON).strftime("%Y%m%d%H%M%S%z")
    version = (msg.version if msg is not None else "") or "2.4"
    trigger = msg.trigger if msg is not None else ""
    control = msg.control_id if msg is not None else ""
    their_app = escape(msg.sending_application, enc) if msg is not None else ""
    their_facility = escape(msg.sending_facility, enc) if msg is not None else ""
    chars = enc.component + enc.repetition + enc.escape + enc.subcomponent
    ack_control = f"ACK{datetime.now(UTC):%Y%m%d%H%M%S}{next(_counter) % 1_000_000:06d}"
    msh = sep.join(["MSH", chars, APPLICATION, FACILITY, their_app, their_facility, when, "",
                    f"ACK{enc.component}{trigger}{enc.component}ACK" if trigger else "ACK", ack_control,
                    (msg.processing_id if msg is not None else "") or "P", version])
    segments = [msh]
    text = escape(error.reason, enc) if error is not None else ""
    segments.append(sep.join(["MSA", code(msg, outcome), escape(control, enc), text]).rstrip(sep))
    if error is not None:
        c = enc.component
        err_code = f"{error.code}{c}{ERROR_TEXT.get(error.code, '')}{c}HL70357"
        where = c.join([error.segment, str(error.position or ""), str(error.field_no or "")]).rstrip(c)
        legacy = c.join([error.segment, str(error.position or ""), str(error.field_no or ""),
                         err_code.replace(c, enc.subcomponent)])
        segments.append(sep.join(["ERR", legacy, where, err_code, "E"]))
    return "\r".join(segments) + "\r"
