"""The generator's clinical codes (issue 4, hazard H-031): every SNOMED CT and dm+d identifier is a
well-formed SCTID, and no code stands for two different things."""

from __future__ import annotations

from collections.abc import Iterator

from sharedcare.synth import codes

# Verhoeff's tables (the check digit SNOMED CT identifiers end with).
MULTIPLY = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
PERMUTE = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]


def verhoeff_ok(number: str) -> bool:
    check = 0
    for i, digit in enumerate(reversed(number)):
        check = MULTIPLY[check][PERMUTE[i % 8][int(digit)]]
    return check == 0


def sctids() -> Iterator[tuple[str, str, str]]:
    """(table, key, id) for every SNOMED CT and dm+d identifier the generator writes."""
    for key, c in codes.CONDITIONS.items():
        yield "CONDITIONS", key, c.snomed.code
    for table in ("RESOLVED", "VACCINES", "IMMUNISATION_PROCEDURES", "NOT_GIVEN", "PANELS", "BLOOD_PRESSURE",
                  "ALLERGENS", "REACTIONS", "OBSERVATIONS", "ENCOUNTER_TYPES"):
        for key, code in getattr(codes, table).items():
            yield table, key, code.code
    for key, m in codes.MEDICINES.items():
        yield "MEDICINES", key, m.dmd
    for key, t in codes.TESTS.items():
        yield "TESTS", key, t.code


def test_verhoeff_recognises_good_and_bad_check_digits() -> None:
    assert verhoeff_ok("195967001")  # Asthma
    assert not verhoeff_ok("195967002")
    assert not verhoeff_ok("195976001")  # two digits swapped


def test_every_code_is_a_valid_sctid() -> None:
    """6 to 18 digits, no leading zero, a concept partition (00 or 10) and a good check digit."""
    for table, key, sctid in sctids():
        assert sctid.isdigit(), (table, key, sctid)
        assert 6 <= len(sctid) <= 18, (table, key, sctid)
        assert sctid[0] != "0", (table, key, sctid)
        assert sctid[-3:-1] in ("00", "10"), (table, key, sctid)
        assert verhoeff_ok(sctid), (table, key, sctid)


def test_no_code_stands_for_two_different_things() -> None:
    displays: dict[str, set[str]] = {}
    for key, c in codes.CONDITIONS.items():
        displays.setdefault(c.snomed.code, set()).add(c.snomed.display)
        assert c.icd10.code[0].isalpha(), key
        assert c.icd10.code[1:3].isdigit(), key
    for table in ("RESOLVED", "VACCINES", "IMMUNISATION_PROCEDURES", "NOT_GIVEN", "BLOOD_PRESSURE", "ALLERGENS",
                  "REACTIONS", "OBSERVATIONS", "ENCOUNTER_TYPES"):
        for code in getattr(codes, table).values():
            displays.setdefault(code.code, set()).add(code.display)
    for m in codes.MEDICINES.values():
        displays.setdefault(m.dmd, set()).add(m.display)
    assert {code: names for code, names in displays.items() if len(names) > 1} == {}
