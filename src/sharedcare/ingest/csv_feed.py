"""CSV extracts through the inbox: each data row of a file is one message, keyed by the file's
SHA-256 and the row's number (the same file put in twice is stored once), mapped when processed by
the source's column mapping (ingest/csv/mapping.py; docs/csv-mappings.md).

A source's mapping is registered with it (`sharedcare sources add ... --csv-mapping FILE|NAME`): the
YAML text, or the name of a mapping shipped in the package (`social-care`, `nhs-111`). Rows are mapped
when processed, so a row the mapping gets wrong is a dead letter that a corrected mapping replays."""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

from sharedcare.fhir import jsonio
from sharedcare.ingest.fhir_feed import Split
from sharedcare.ingest.hl7v2.mapping import Context, Mapped
from sharedcare.ingest.hl7v2.message import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, ParseError
from sharedcare.storage.inbox_store import Incoming, Source


def mapping_for(source: Source) -> Any:
    """The source's column mapping (ParseError when it has none, or it no longer loads)."""
    from sharedcare.ingest.csv import mapping as csv_mapping

    text = source.csv_mapping
    if not text:
        raise ParseError("the source has no CSV column mapping registered", REQUIRED_FIELD_MISSING)
    try:
        if "\n" not in text and ":" not in text:
            return csv_mapping.packaged(text.strip())
        return csv_mapping.load(text)
    except (ValueError, OSError) as exc:
        raise ParseError(f"the source's CSV column mapping is not valid: {exc}", DATA_TYPE_ERROR) from None


def split(source: Source, data: bytes, name: str) -> Split:
    """One inbox message per data row (the header is carried with each)."""
    checksum = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Split([], [f"{name}: not UTF-8 text"])
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return Split([], [f"{name}: empty"])
    header, problems, items = rows[0], [], []
    for n, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(f"{name}, row {n}: {len(row)} columns where the header has {len(header)}")
            continue
        payload = jsonio.dumps({"file": name, "row_number": n, "header": header, "row": row})
        items.append(Incoming(source.source_id, f"sha256:{checksum}:{n}", "csv", payload))
    return Split(items, problems)


def map_stored(payload: bytes, source: Source, ctx: Context) -> Mapped:
    from sharedcare.ingest.csv import mapping as csv_mapping

    doc = jsonio.loads(payload)
    mapped: Mapped = csv_mapping.map_row(mapping_for(source), list(doc["header"]), list(doc["row"]), ctx)
    return mapped
