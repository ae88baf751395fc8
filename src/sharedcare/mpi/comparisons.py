"""What matching compares between two records, written once for both of its users.

Each comparison is a list of agreement levels, tried in order; the first that holds decides the
comparison's contribution to a pair's match weight (Fellegi–Sunter). Every level is written twice, side
by side: as the SQL condition Splink evaluates while it trains the weights (on DuckDB), and as the
Python test the online scorer evaluates on one pair. Only conditions both can compute exactly are used
(equality, membership, substrings, edit distance), so a trained model scores a pair the same way in
both: `tests/spec/mpi/test_scoring.py` checks that on FEBRL.

A record's comparable fields (`features`) are computed in Python once, from its `Demographics`:
phonetic codes and nickname groups are columns, not SQL, for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jellyfish

from sharedcare.mpi.normalise import Demographics, name_group

Features = Mapping[str, Any]


def features(d: Demographics, address: str | None = None) -> dict[str, Any]:
    """The columns the comparisons read, for one record. `address` is a first address line already
    reduced to plain words (optional: the index compares it when a source gives one)."""
    given1 = d.given[0] if d.given else None
    families = list(dict.fromkeys([*([d.family] if d.family else []), *d.former_families,
                                   *(d.family_words if len(d.family_words) > 1 else ())]))
    outward, _, inward = (d.postcode or "").partition(" ")
    return {
        "nhs_number": d.nhs_number,
        "nhs_number_checked": d.nhs_number is not None,  # passed modulus 11 (FEBRL's stand-in does not)
        "family": d.family,
        "families": families or None,
        "family_sound": jellyfish.metaphone(d.family) if d.family else None,
        "given1": given1,
        "given_names": list(d.given) or None,
        "given1_group": sorted(name_group(given1)) if given1 else None,
        "given1_sound": jellyfish.metaphone(given1) if given1 else None,
        "birth_date": d.birth_date if d.birth_date and len(d.birth_date) == 10 else None,
        "sex": d.sex if d.sex in ("male", "female") else None,
        "postcode": d.postcode,
        "postcode_sector": f"{outward} {inward[:1]}" if inward else None,
        "postcode_district": outward or None,
        "address": address or None,
    }


def _levenshtein(a: str, b: str) -> int:
    return int(jellyfish.levenshtein_distance(a, b))


@dataclass(frozen=True)
class Level:
    label: str
    sql: str  # a Splink condition on the columns with `_l` and `_r` suffixes
    test: Callable[[Features, Features], bool]


@dataclass(frozen=True)
class Comparison:
    name: str
    columns: tuple[str, ...]  # the pair is missing (null level) when any is absent on either side
    levels: tuple[Level, ...]  # tried in order; none holding is the "else" level

    def null_sql(self) -> str:
        return " OR ".join(f'"{c}_l" IS NULL OR "{c}_r" IS NULL' for c in self.columns)

    def level(self, left: Features, right: Features) -> int:
        """-1 when a value is missing (no evidence either way), else the index of the first level that
        holds, or len(levels) for "else"."""
        for c in self.columns:
            if left.get(c) is None or right.get(c) is None:
                return -1
        i = 0
        for lvl in self.levels:
            if lvl.test(left, right):
                return i
            i += 1
        return i

    def splink(self) -> dict[str, Any]:
        """This comparison in Splink's settings form."""
        levels: list[dict[str, Any]] = [{"sql_condition": self.null_sql(), "label_for_charts": "missing",
                                         "is_null_level": True}]
        levels += [{"sql_condition": lvl.sql, "label_for_charts": lvl.label} for lvl in self.levels]
        levels.append({"sql_condition": "ELSE", "label_for_charts": "else"})
        return {"output_column_name": self.name, "comparison_levels": levels}


def _eq(col: str) -> Level:
    return Level("exact", f'"{col}_l" = "{col}_r"', lambda a, b: bool(a[col] == b[col]))


def _edit(col: str, most: int) -> Level:
    return Level(f"edit distance <= {most}", f'levenshtein("{col}_l", "{col}_r") <= {most}',
                 lambda a, b: _levenshtein(a[col], b[col]) <= most)


def _both_have(col: str, label: str) -> Level:
    """Some value of `col` (a list) on one side is in the other's."""
    return Level(label, f'len(list_intersect("{col}_l", "{col}_r")) > 0',
                 lambda a, b: bool(set(a[col]) & set(b[col])))


def _nickname() -> Level:
    return Level("nickname",
                 'list_contains("given1_group_l", "given1_r") OR list_contains("given1_group_r", "given1_l")',
                 lambda a, b: b["given1"] in a["given1_group"] or a["given1"] in b["given1_group"])


def _same(col: str, label: str) -> Level:
    """Equal on another column (itself present on both sides: checked in the test and the SQL)."""
    return Level(label, f'"{col}_l" = "{col}_r"',
                 lambda a, b: a.get(col) is not None and a.get(col) == b.get(col))


def _names_swapped() -> Level:
    """Given and family names written the wrong way round on one side."""
    return Level("given and family swapped", '"family_l" = "given1_r" AND "given1_l" = "family_r"',
                 lambda a, b: (a.get("given1") is not None and b.get("given1") is not None
                               and a["family"] == b["given1"] and a["given1"] == b["family"]))


def _dob_swapped() -> Level:
    return Level("day and month swapped",
                 'substr("birth_date_l", 1, 4) = substr("birth_date_r", 1, 4) AND '
                 'substr("birth_date_l", 6, 2) = substr("birth_date_r", 9, 2) AND '
                 'substr("birth_date_l", 9, 2) = substr("birth_date_r", 6, 2)',
                 lambda a, b: (a["birth_date"][:4] == b["birth_date"][:4]
                               and a["birth_date"][5:7] == b["birth_date"][8:10]
                               and a["birth_date"][8:10] == b["birth_date"][5:7]))


def _same_year() -> Level:
    return Level("same year", 'substr("birth_date_l", 1, 4) = substr("birth_date_r", 1, 4)',
                 lambda a, b: a["birth_date"][:4] == b["birth_date"][:4])


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("nhs_number", ("nhs_number",), (_eq("nhs_number"),)),
    Comparison("family", ("family",), (
        _eq("family"),
        _names_swapped(),
        _both_have("families", "a current or former family name shared"),
        _edit("family", 1),
        _same("family_sound", "sounds alike"),
        _edit("family", 2),
    )),
    Comparison("given", ("given1",), (
        _eq("given1"),
        _names_swapped(),
        _nickname(),
        _edit("given1", 1),
        _same("given1_sound", "sounds alike"),
        _both_have("given_names", "another given name shared"),
        _edit("given1", 2),
    )),
    Comparison("birth_date", ("birth_date",), (
        _eq("birth_date"),
        _dob_swapped(),
        _edit("birth_date", 1),
        _edit("birth_date", 2),
        _same_year(),
    )),
    Comparison("sex", ("sex",), (_eq("sex"),)),
    Comparison("postcode", ("postcode",), (
        _eq("postcode"),
        _edit("postcode", 1),
        _same("postcode_sector", "same sector"),
        _same("postcode_district", "same district"),
    )),
    Comparison("address", ("address",), (
        _eq("address"),
        _edit("address", 2),
    )),
)
