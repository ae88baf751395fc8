"""Routine childhood immunisations for each birth cohort, with the delays and missed doses of life.

The schedule follows UKHSA's routine schedule as it changed on 1 July 2025 (MenB at 8 and 12 weeks,
PCV at 16 weeks, no Hib/MenC for children born from 1 July 2024) and on 1 January 2026 (MMRV in place
of MMR; a new 18-month appointment for children born from 1 July 2024); ../shared/reference/
pathfinders.md section 3 has the sources. Whether a dose is given, and when, depends on the family:
most children are vaccinated on time, some late or not at all, a few families decline. The shares
are tuned so that London's COVER coverage comes out (docs/synth.md; tests/spec/synth/test_calibration.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from sharedcare.synth.story import Vaccination

NEW_PRIMARY = date(2025, 7, 1)  # 12-week visits from this date give MenB 2 (and PCV at 16 weeks)
NO_HIB_MENC = date(2024, 7, 1)  # born on or after: no Hib/MenC at one year; 6-in-1 dose 4 at 18 months
MMRV_START = date(2026, 1, 1)  # measles-containing doses from this date are MMRV
MMRV_BORN_FROM = date(2022, 9, 1)  # born before this: MMR at 3 years 4 months, not MMRV
ALL_MMRV = date(2025, 1, 1)  # born on or after: MMRV at 12 and 18 months, nothing measles at 3y4m


@dataclass(frozen=True)
class Dose:
    key: str  # codes.IMMUNISATION_PROCEDURES key
    due: date
    product: str  # codes.VACCINES key
    measles: int = 0  # which measles-containing dose this is (0: not one)
    preschool: bool = False  # the 3 years 4 months appointment


def schedule(born: date) -> list[Dose]:
    """Every routine dose a child born on `born` is offered before school, in due order."""
    at = {"8w": born + timedelta(days=56), "12w": born + timedelta(days=84), "16w": born + timedelta(days=112),
          "1y": _add_months(born, 12), "18m": _add_months(born, 18), "3y4m": _add_months(born, 40)}
    new = at["12w"] >= NEW_PRIMARY
    doses = [Dose("dtap_ipv_hib_hepb_1", at["8w"], "infanrix_hexa"), Dose("menb_1", at["8w"], "bexsero"),
             Dose("rota_1", at["8w"], "rotarix"),
             Dose("dtap_ipv_hib_hepb_2", at["12w"], "infanrix_hexa"), Dose("rota_2", at["12w"], "rotarix"),
             Dose("menb_2" if new else "pcv_1", at["12w"], "bexsero" if new else "prevenar13"),
             Dose("dtap_ipv_hib_hepb_3", at["16w"], "infanrix_hexa"),
             Dose("pcv_1" if new else "menb_2", at["16w"], "prevenar13" if new else "bexsero"),
             Dose("pcv_booster", at["1y"], "prevenar13"), Dose("menb_booster", at["1y"], "bexsero")]
    if born < NO_HIB_MENC:
        doses.append(Dose("hib_menc", at["1y"], "menitorix"))
    mmrv_first = at["1y"] >= MMRV_START
    doses.append(Dose("mmrv_1" if mmrv_first else "mmr_1", at["1y"], "proquad" if mmrv_first else "priorix",
                      measles=1))
    if born >= NO_HIB_MENC:
        doses.append(Dose("dtap_ipv_hib_hepb", at["18m"], "infanrix_hexa"))
        doses.append(Dose("mmrv_2" if mmrv_first else "mmrv_1", at["18m"], "proquad", measles=2))
    doses.append(Dose("dtap_ipv_booster", at["3y4m"], "boostrix_ipv", preschool=True))
    if born < MMRV_BORN_FROM:
        doses.append(Dose("mmr_2", at["3y4m"], "priorix", measles=2, preschool=True))
    elif born < NO_HIB_MENC:
        doses.append(Dose("mmrv_1", at["3y4m"], "proquad", measles=2, preschool=True))
    elif born < ALL_MMRV:
        doses.append(Dose("mmrv_2", at["3y4m"], "proquad", measles=3, preschool=True))
    return doses


# The family's habit (share of children): doses given on time, late or patchily, or declined.
ON_TIME, PATCHY, DECLINING = 0.72, 0.23, 0.05
MEASLES_HESITANT = 0.06  # otherwise willing families who decline measles-containing vaccines
PRESCHOOL_MISSED = 0.05  # on-time families who miss the 3 years 4 months appointment altogether


def vaccinations(born: date, as_of: date, until: date, rng: random.Random) -> list[Vaccination]:
    """The child's doses due by `as_of`: given (with a date), declined or not given. `until`: the
    day they left the practice's care (death), after which nothing is recorded."""
    habit = rng.random()
    hesitant = rng.random() < MEASLES_HESITANT
    skips_preschool = rng.random() < PRESCHOOL_MISSED
    out: list[Vaccination] = []
    visits: dict[date, date] = {}  # due date -> the day the child was seen for it (doses of a visit go together)
    last_visit: date | None = None
    for dose in schedule(born):
        if dose.due > as_of or dose.due > until:
            break
        if habit >= ON_TIME + PATCHY or (hesitant and dose.measles):
            refused = dose.due + timedelta(days=rng.randint(0, 21))
            declined = rng.random() < 0.6 and refused <= as_of
            out.append(Vaccination(dose.key, dose.due, None, refusal=_decline(dose.key) if declined else None,
                                   refused_on=refused if declined else None))
            continue
        if dose.due not in visits:
            if habit < ON_TIME:
                delay = rng.expovariate(1 / 10) if rng.random() < 0.95 else rng.uniform(60, 300)
            else:
                delay = rng.expovariate(1 / 45)
            seen = dose.due + timedelta(days=int(delay))
            if last_visit is not None and seen < last_visit + timedelta(days=28):
                seen = last_visit + timedelta(days=28)  # at least four weeks between visits
            visits[dose.due] = last_visit = seen
        on = visits[dose.due]
        if habit < ON_TIME:
            given = not (dose.preschool and skips_preschool) and rng.random() < (0.98 if dose.measles else 0.995)
        else:
            given = rng.random() < (0.72 if dose.measles else 0.9)
        if not given or on > as_of or on > until:
            dna = not given and rng.random() < 0.4 and dose.due + timedelta(days=28) <= min(as_of, until)
            out.append(Vaccination(dose.key, dose.due, None, refusal="dna_child_immunisation" if dna else None,
                                   refused_on=dose.due + timedelta(days=28) if dna else None))
            continue
        out.append(Vaccination(dose.key, dose.due, on, product=dose.product))
    return out


def _decline(key: str) -> str:
    if key.startswith(("mmr", "mmrv")):
        return "mmr_declined"
    if key.startswith("menb"):
        return "menb_declined"
    if key.startswith("rota"):
        return "rota_declined"
    if key.startswith("pcv"):
        return "pcv_declined"
    return "six_in_one_declined"


def _add_months(d: date, months: int) -> date:
    month = d.month - 1 + months
    year, month = d.year + month // 12, month % 12 + 1
    for day in (d.day, 30, 29, 28):
        try:
            return date(year, month, day)
        except ValueError:
            continue
    raise AssertionError("unreachable")
