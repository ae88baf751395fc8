"""The R4 `phonetic` search parameters: names that sound alike match.

R4 defines `phonetic` on Patient, Person, Practitioner and RelatedPerson (any part of a name) and on
Organization and InsurancePlan (the name), as "a portion of the name using some kind of phonetic
matching algorithm", leaving the algorithm to the server. Here it is Metaphone (Lawrence Philips,
1990; jellyfish's implementation), word by word:

- Indexing: every word of every name part (family, given, prefix, suffix, text) is stored as its
  Metaphone code, once per resource, in `idx_string` under the parameter `phonetic`.
- Searching: each word of the value is encoded the same way; a resource matches when it has every
  word's code (`phonetic=Smyth` finds Smith; `phonetic=Mary Smyth` needs both names).
- Words are what `normalise` leaves (case and accents folded) split at anything but a letter;
  apostrophes join (O'Brien is one word). A word with no Latin letters (another script) is kept as
  it is, so it matches itself exactly.

Metaphone catches spelling variants such as Smith/Smyth, Catherine/Kathryn, Stephen/Steven,
Mohammed/Muhammad, Geoffrey/Jeffrey and Clark/Clarke; it misses some that sound alike to a person
(Sean/Shaun, Thompson/Thomson, Siobhan/Shivaun, Niamh/Neve). Changing the algorithm changes every
stored code: it needs a migration that re-encodes the `phonetic` rows (as 0009 did).
"""

from __future__ import annotations

import re

import jellyfish

from sharedcare.fhir.search.extract import normalise

PARAM = "phonetic"
_APOSTROPHES = re.compile(r"['\u2019`]")
_WORDS = re.compile(r"[^\W\d_]+")  # runs of letters, in any script


def codes(text: str) -> list[str]:
    """The distinct phonetic codes of the words of `text`, in order."""
    out: list[str] = []
    for word in _WORDS.findall(_APOSTROPHES.sub("", normalise(text))):
        code = jellyfish.metaphone(word).upper() if word.isascii() else word
        if code and code not in out:
            out.append(code)
    return out
