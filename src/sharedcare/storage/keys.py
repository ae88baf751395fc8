"""Values kept in index keys, whatever their length.

PostgreSQL refuses an index entry over about 2.7 KB (a B-tree holds at least three per page), and a
FHIR string has no length limit: a 9,000-character family name or identifier, valid FHIR, could not be
stored at all. An indexed column therefore holds a value of up to KEY_MAX characters as it is, and a
longer one as its first KEY_KEEP characters, a separator no FHIR string contains (U+0001: strings
hold no control characters but tab, CR and LF) and a digest of the whole value. So, on both backends:
- equality is exact at any length: the search value is keyed the same way (`fit`);
- a prefix (a string search) of up to KEY_KEEP characters finds long values too (they start with
  their own first KEY_KEEP characters); a longer prefix finds the values it is a prefix of only
  where they are at most KEY_MAX characters long, and long values only when equal to it;
- sorting orders long values by their first KEY_KEEP characters.
Only the index rows are keyed; the stored resource is untouched. The widest key (a token's code and
system, each at most 193 characters of up to 4 bytes) stays well inside PostgreSQL's limit.
"""

from __future__ import annotations

import hashlib

from sharedcare.storage.tables import ID

KEY_MAX = 200
KEY_KEEP = 160
SEPARATOR = "\x01"


def fit(value: str) -> str:
    """`value` as an indexed column holds it."""
    if len(value) <= KEY_MAX:
        return value
    return value[:KEY_KEEP] + SEPARATOR + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def fit_opt(value: str | None) -> str | None:
    return value if value is None or len(value) <= KEY_MAX else fit(value)


def names_no_resource(*parts: str | None) -> bool:
    """A reference part (type, id, version) longer than a FHIR id's 64 characters: the reference can
    name no resource on any server, and is indexed as its text in `url` (storage/indexing.py)."""
    return any(len(p or "") > ID for p in parts)
