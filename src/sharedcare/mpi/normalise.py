"""Comparable demographics from a source Patient: the first step of matching (issue 6, item 1).

Every source writes names, dates, postcodes and NHS numbers its own way. Matching compares one
canonical form of each:

- **NHS number**: ten digits passing the modulus 11 check (`nhs-number`), spaces and hyphens allowed
  between them. A number that fails the check is kept as the source's unverified identifier and is
  never used for linking. A record carrying two different valid NHS numbers links by neither.
- **Names**: words in lower case without accents; an apostrophe joins (O'Brien is `obrien`), a hyphen
  or a space separates (Smith-Jones is `smith` `jones`, and `smithjones` as a whole family name).
  Given names are compared allowing nicknames (Bob and Robert) through the `nicknames` data set.
  Earlier family names (`use` old or maiden) are kept, for people whose surname changed.
- **Date of birth**: a FHIR date (year, year-month or full date) that exists, as written.
- **Postcode**: a UK postcode in its standard form (`SW1A 1AA`) from the current home address, or
  from the first current address if none is marked home.

Nothing here logs or keeps anything beyond the returned value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from typing import Any

from nhs_number.validate import is_valid

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"

_NHS_SEPARATORS = re.compile(r"[\s-]")
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
_FHIR_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
# What systems write when they do not know a name (an unidentified emergency patient, a newborn): not
# a name, so never evidence that two records are one person.
PLACEHOLDER_NAMES = frozenset({"unknown", "unk", "notknown", "nk", "anon", "anonymous", "noname", "xx", "xxx",
                               "zz", "zzz", "baby", "babyof", "infant", "newborn"})
_APOSTROPHES = str.maketrans("", "", "'’‘`")
# Letters that carry no accent to strip but are written plainly in English records.
_PLAIN_LETTERS = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
                                "ı": "i"})


def nhs_number(raw: str | None) -> str | None:
    """The ten-digit NHS number written in `raw` if it is valid, else None."""
    if raw is None:
        return None
    digits = _NHS_SEPARATORS.sub("", raw)
    if len(digits) != 10 or not digits.isdigit() or not is_valid(digits):
        return None
    return digits


def name_words(text: str | None) -> tuple[str, ...]:
    """The words of a name in lower case, accents removed, apostrophes dropped, letters only (none
    for anything but text: an unchecked input such as `$match`'s may hold anything)."""
    return _name_words(text) if isinstance(text, str) and text else ()


@lru_cache(maxsize=1 << 16)  # names repeat: a city has far fewer names than records
def _name_words(text: str) -> tuple[str, ...]:
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", text.casefold())
                    if not unicodedata.combining(ch))
    plain = plain.translate(_APOSTROPHES).translate(_PLAIN_LETTERS)
    return tuple(word for word in re.split(r"[^a-z]+", plain) if word)


def family_key(text: str | None) -> str | None:
    """A family name as one comparable string (`Smith-Jones` and `smith jones` are `smithjones`);
    None for a placeholder such as UNKNOWN."""
    key = "".join(name_words(text))
    return key if key and key not in PLACEHOLDER_NAMES else None


def given_words(names: Iterable[str]) -> tuple[str, ...]:
    """The words of given names, in order; none when the first is a placeholder (UNKNOWN, BABY)."""
    words = tuple(word for name in names for word in name_words(name))
    return () if not words or words[0] in PLACEHOLDER_NAMES or "".join(words) in PLACEHOLDER_NAMES else words


@cache
def _nicknamer() -> Any:
    from nicknames import NickNamer  # loads its table once, on first use

    return NickNamer()


@cache
def name_group(word: str) -> frozenset[str]:
    """A given-name word with its known nicknames and the names it is a nickname of."""
    namer = _nicknamer()
    return frozenset({word} | namer.nicknames_of(word) | namer.canonicals_of(word))


def same_given_name(a: str, b: str) -> bool:
    """Whether two given-name words are the same name or one is a known nickname of the other (or both
    of one name): `bob` and `robert`, `liz` and `elizabeth`, `peggy` and `margaret`. A missing name
    matches nothing, not even another missing one."""
    if not a or not b:
        return False
    return a == b or b in name_group(a) or a in name_group(b)


def postcode(raw: str | None) -> str | None:
    """A UK postcode in its standard form (outward code, space, inward code), or None."""
    return _postcode_of(raw) if isinstance(raw, str) and raw else None


@lru_cache(maxsize=1 << 16)
def _postcode_of(raw: str) -> str | None:
    compact = re.sub(r"\s+", "", raw).upper()
    found = _POSTCODE.match(compact)
    if found is None:
        return None
    return f"{found.group(1)} {found.group(2)}"


def birth_date(raw: str | None) -> str | None:
    """A FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) naming a date that exists, or None."""
    if not raw:
        return None
    found = _FHIR_DATE.match(raw.strip())
    if found is None:
        return None
    year, month, day = found.groups()
    try:
        date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None
    return found.group(0)


@dataclass(frozen=True)
class Demographics:
    """What matching compares about one source Patient."""

    nhs_number: str | None  # valid, and the only one the record carries; the key for linking
    unverified_numbers: tuple[str, ...]  # NHS numbers written but never used for linking
    family: str | None  # family_key of the current name
    family_words: tuple[str, ...]
    former_families: tuple[str, ...]  # family_key of names marked old or maiden
    given: tuple[str, ...]  # given-name words, in order
    birth_date: str | None
    sex: str | None  # administrative gender as written (male, female, other, unknown)
    postcode: str | None


def _identifiers(patient: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    written = [str(i.get("value") or "") for i in patient.get("identifier") or []
               if isinstance(i, Mapping) and i.get("system") == NHS_NUMBER_SYSTEM and i.get("value")]
    valid = list(dict.fromkeys(n for n in (nhs_number(w) for w in written) if n is not None))
    if len(valid) == 1:
        return valid[0], tuple(w for w in written if nhs_number(w) is None)
    return None, tuple(written)  # none valid, or two different valid numbers: link by neither


def _current(items: Iterable[Any]) -> list[Mapping[str, Any]]:
    """Entries whose period has not ended."""
    return [i for i in items if isinstance(i, Mapping) and not (i.get("period") or {}).get("end")]


def _name(patient: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]:
    names = [n for n in patient.get("name") or [] if isinstance(n, Mapping)]
    former = [n for n in names if n.get("use") in ("old", "maiden")]
    current = [n for n in _current(names) if n.get("use") not in ("old", "maiden")]
    chosen = next((n for n in current if n.get("use") == "official"), None) or \
        next((n for n in current if n.get("use") not in ("nickname", "anonymous", "temp")), None) or \
        (current[0] if current else None)
    return chosen, former


def _postcode(patient: Mapping[str, Any]) -> str | None:
    addresses = [a for a in _current(patient.get("address") or []) if a.get("use") not in ("old", "billing")]
    home = [a for a in addresses if a.get("use") == "home"]
    for address in home + addresses:
        found = postcode(address.get("postalCode"))
        if found is not None:
            return found
    return None


def from_patient(patient: Mapping[str, Any]) -> Demographics:
    """The demographics matching compares, from a FHIR R4 Patient (as stored: a dict)."""
    number, unverified = _identifiers(patient)
    name, former = _name(patient)
    family = name.get("family") if name else None
    given = given_words(name.get("given") or [] if name else [])
    gender = patient.get("gender")
    return Demographics(
        nhs_number=number,
        unverified_numbers=unverified,
        family=family_key(family),
        family_words=name_words(family) if family_key(family) else (),
        former_families=tuple(dict.fromkeys(k for k in (family_key(n.get("family")) for n in former) if k)),
        given=given,
        birth_date=birth_date(patient.get("birthDate")),
        sex=gender if gender in ("male", "female", "other", "unknown") else None,
        postcode=_postcode(patient),
    )
