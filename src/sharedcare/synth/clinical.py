"""The clinical life of each synthetic person: long-term conditions and their treatment, blood
pressure, allergies, immunisations, hospital and mental health care, ambulance incidents, 111 calls,
social care, cancer pathways, end-of-life plans and appointments.

Each person's story is drawn from their own random stream (seed and person id), so adding a kind of
event never changes the people. Rates are per year unless named otherwise; each is an assumption or
a public figure given in docs/synth.md, and the ones the pathfinders depend on are checked by
tests/spec/synth/test_calibration.py.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta

from sharedcare.synth import immunisations
from sharedcare.synth.directory import gss_code
from sharedcare.synth.geography import BOROUGHS
from sharedcare.synth.names import FAMILY, GIVEN_FEMALE, GIVEN_MALE
from sharedcare.synth.people import Person
from sharedcare.synth.providers import PROVIDERS
from sharedcare.synth.story import (
    Allergy,
    Appointment,
    Call111,
    CancerPathway,
    CarePackage,
    EndOfLifePlan,
    Finding,
    Incident,
    Issue,
    LabReport,
    Problem,
    Reading,
    Story,
    Visit,
)

# Long-term conditions: (key, lowest age, chance by age band (lowest age of band, chance)).
# Hypertension is tuned to London's QOF register (about 11% of registered patients); asthma below.
LTCS: tuple[tuple[str, int, tuple[tuple[int, float], ...]], ...] = (
    ("essential_hypertension", 18, ((18, 0.004), (30, 0.03), (40, 0.085), (50, 0.18), (60, 0.33), (70, 0.46),
                                    (80, 0.56))),
    ("type2_diabetes", 25, ((25, 0.02), (40, 0.07), (55, 0.14), (70, 0.2))),
    ("copd", 40, ((40, 0.01), (55, 0.035), (70, 0.07))),
    ("chd", 45, ((45, 0.02), (60, 0.06), (75, 0.12))),
    ("atrial_fibrillation", 55, ((55, 0.02), (70, 0.07), (80, 0.12))),
    ("heart_failure", 60, ((60, 0.01), (75, 0.04), (85, 0.08))),
    ("stroke", 50, ((50, 0.01), (70, 0.04), (80, 0.07))),
    ("ckd3", 50, ((50, 0.02), (65, 0.07), (80, 0.15))),
    ("depression", 16, ((16, 0.1),)),
    ("anxiety", 16, ((16, 0.06),)),
    ("schizophrenia", 18, ((18, 0.008),)),
    ("dementia", 65, ((65, 0.01), (75, 0.05), (85, 0.15))),
    ("hypothyroidism", 20, ((20, 0.02), (50, 0.05))),
    ("osteoarthritis", 45, ((45, 0.05), (65, 0.15))),
    ("epilepsy", 2, ((2, 0.008),)),
    ("learning_disability", 0, ((0, 0.005),)),
    ("autism", 2, ((2, 0.012),)),
)
BLACK = frozenset("MNP")  # NHS ethnic categories: Black Caribbean, Black African, any other Black background
ASTHMA = 0.072  # ever diagnosed, aged 3 and over (London QOF register about 5% once resolved and lapsed are out)
ASTHMA_RESOLVED = 0.07
ASTHMA_LAPSED = 0.18  # no asthma treatment in the last year (off the QOF register)
# Asthma control profiles: (name, share, SABA issues a year, ICS issues a year, steroid courses, A&E chance)
ASTHMA_PROFILES = (
    ("controlled", 0.60, (0, 4), (6, 12), (0, 0), 0.01),
    ("partly", 0.22, (4, 9), (2, 6), (0, 2), 0.06),
    ("poor", 0.08, (10, 24), (0, 4), (2, 5), 0.45),
    ("saba-only", 0.08, (2, 14), (0, 0), (0, 1), 0.05),
    ("laba-without-ics", 0.02, (1, 6), (0, 0), (0, 1), 0.05),
)
REPEATS = {  # repeat medicines for a condition: (key, share of people with the condition on it)
    "essential_hypertension": (("ramipril_5", 0.45), ("amlodipine_5", 0.6), ("atorvastatin_20", 0.3)),
    "type2_diabetes": (("metformin_500", 0.85), ("atorvastatin_20", 0.7)),
    "chd": (("atorvastatin_20", 0.85),),
    "atrial_fibrillation": (("apixaban_5", 0.8),),
    "copd": (("fluticasone_salmeterol_250_25", 0.5), ("salbutamol_inhaler", 0.7)),
    "osteoarthritis": (("paracetamol_500", 0.4),),
}
ALLERGIES = (  # (substance, chance, reactions to choose from)
    ("penicillin", 0.06, ("rash", "urticaria", "rash", "anaphylaxis", "angioedema")),
    ("amoxicillin", 0.01, ("rash", "diarrhoea")),
    ("peanut", 0.01, ("urticaria", "anaphylaxis", "angioedema")),
    ("latex", 0.003, ("urticaria", "rash")),
    ("aspirin", 0.005, ("wheeze", "urticaria")),
    ("ibuprofen", 0.008, ("wheeze", "rash")),
    ("codeine", 0.006, ("nausea", "rash")),
    ("shellfish", 0.005, ("urticaria", "anaphylaxis")),
    ("egg", 0.004, ("urticaria", "rash")),
)
ED_RATE = ((0, 0.55), (5, 0.25), (16, 0.3), (65, 0.42), (80, 0.85))  # attendances a year
ADMIT = ((0, 0.12), (16, 0.18), (65, 0.35), (80, 0.5))  # share of attendances admitted
ED_DIAGNOSES = ((0, ("abdominal_pain", "head_injury", "uti", "pneumonia", "fall")),
                (16, ("chest_pain", "abdominal_pain", "head_injury", "cellulitis", "uti", "syncope", "fall")),
                (65, ("fall", "chest_pain", "pneumonia", "uti", "sepsis", "syncope", "fractured_neck_of_femur")))
ELECTIVE = ((18, 0.02), (50, 0.05), (70, 0.08))
OUTPATIENT = ((0, 0.2), (18, 0.35), (50, 0.6), (70, 0.9))  # first or follow-up appointments a year
SPECIALTIES = ("cardiology", "respiratory medicine", "diabetes and endocrinology", "general surgery",
               "trauma and orthopaedics", "ophthalmology", "dermatology", "gastroenterology", "paediatrics",
               "gynaecology", "urology", "ENT")
AMBULANCE = ((0, 0.04), (16, 0.05), (65, 0.12), (80, 0.3))  # incidents a year not ending at the ED
CALLS_111 = ((0, 0.4), (5, 0.15), (16, 0.22), (65, 0.28))
DISPOSITIONS_111 = (("self-care", 0.18), ("pharmacy", 0.1), ("contact-gp-urgently", 0.34),
                    ("attend-urgent-treatment-centre", 0.12), ("attend-emergency-department", 0.1),
                    ("ambulance-dispatched", 0.08), ("dental", 0.03), ("clinician-call-back", 0.05))
SYMPTOMS_111 = ("abdominal pain", "cough", "fever", "rash", "headache", "chest pain", "breathing problems",
                "vomiting", "back pain", "mental health concern", "dental problems", "urinary problems")
CANCER_REFERRALS = ((0, 0.002), (30, 0.03), (50, 0.06), (70, 0.09))  # urgent suspected cancer referrals a year
CANCER_FOUND = 0.07  # share of urgent referrals that find a cancer (England, FDS data)
SPECIALIST_CENTRES = ("RRV", "RJ1", "RYJ", "R1H", "RJ7", "RJZ")
IPT = 0.3  # share of cancers treated at another trust (an inter-provider transfer)
OUTSIDE_ICS = 0.22  # a hospital, mental health or community contact with a provider outside the home ICS
WARDS = ("Acute Medical Unit", "Ward 4 (Respiratory)", "Ward 7 (Care of the Elderly)", "Cardiology Ward",
         "Surgical Assessment Unit", "Trauma Ward", "Children's Ward")
WHAT_MATTERS = ("Being at home with my family", "Staying comfortable and free of pain",
                "Having my dog with me", "Not going back into hospital", "Seeing my grandchildren",
                "Keeping my faith and having my priest or imam called")


@dataclass
class Ids:
    """Per-run counters for the identifiers organisations give events (deterministic in order)."""

    counters: dict[str, int] = field(default_factory=dict)

    def next(self, prefix: str, width: int = 8) -> str:
        n = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = n
        return f"{prefix}{n:0{width}d}"


@dataclass(frozen=True)
class Care:
    """Which providers serve whom: acute, mental health and community trusts by ICS and borough."""

    acute_near: dict[str, tuple[str, ...]]  # borough -> acute trusts with a site in or nearest it
    by_kind_ics: dict[tuple[str, str], tuple[str, ...]]  # (kind, ics) -> provider codes
    sites: dict[str, tuple[str, ...]]  # provider -> site names
    ics_of: dict[str, str]  # provider -> ICS

    @classmethod
    def build(cls) -> Care:
        by_kind_ics: dict[tuple[str, str], list[str]] = {}
        for p in PROVIDERS:
            by_kind_ics.setdefault((p.kind, p.ics), []).append(p.code)
        near: dict[str, tuple[str, ...]] = {}
        for b in BOROUGHS:
            local = tuple(p.code for p in PROVIDERS if p.kind == "acute" and any(s.borough == b.code for s in p.sites))
            near[b.code] = local or tuple(by_kind_ics[("acute", b.ics)])
        return cls(near, {k: tuple(v) for k, v in by_kind_ics.items()},
                   {p.code: tuple(s.name for s in p.sites) for p in PROVIDERS}, {p.code: p.ics for p in PROVIDERS})

    def provider(self, kind: str, person: Person, rng: random.Random) -> str:
        """A provider of `kind` for this contact: mostly one near home, sometimes one elsewhere in London."""
        if rng.random() < OUTSIDE_ICS:
            others = [c for (k, ics), codes in self.by_kind_ics.items() if k == kind and ics != person.ics
                      for c in codes]
            if others:
                return rng.choice(others)
        if kind == "acute":
            return rng.choice(self.acute_near[person.borough])
        own = self.by_kind_ics.get((kind, person.ics))
        return rng.choice(own) if own else rng.choice([c for (k, _), cs in self.by_kind_ics.items() if k == kind
                                                        for c in cs])


def story(person: Person, as_of: date, seed: int, care: Care, ids: Ids) -> Story:
    """Everything that happened to `person` up to `as_of` (and appointments booked after it)."""
    rng = random.Random(f"clinical:{seed}:{person.person_id}")  # noqa: S311 - reproducible synthetic data
    s = Story()
    life = _Life(person, as_of, rng, care, ids, s)
    life.conditions()
    life.asthma()
    life.treatments()
    life.blood_pressure()
    life.allergies_and_findings()
    if person.birth_date > as_of - timedelta(days=6 * 365):
        s.vaccinations = immunisations.vaccinations(person.birth_date, as_of, life.until, rng)
    life.hospital()
    life.outpatients()
    life.ambulance_and_111()
    life.mental_health()
    life.social_care()
    life.cancer()
    life.end_of_life()
    life.labs()
    return s


class _Life:
    def __init__(self, person: Person, as_of: date, rng: random.Random, care: Care, ids: Ids, s: Story) -> None:
        self.p, self.as_of, self.rng, self.care, self.ids, self.s = person, as_of, rng, care, ids, s
        self.until = person.died_on or as_of  # nothing is recorded after death
        self.age = age_on(person.birth_date, as_of)
        self.has: set[str] = set()

    # --- helpers ---------------------------------------------------------------------------------
    def day(self, start: date, end: date) -> date:
        """A day in [start, end] (end inclusive), never before birth nor after death."""
        start = max(start, self.p.birth_date)
        end = min(end, self.until)
        if end <= start:
            return start if start <= self.until else self.until
        return start + timedelta(days=self.rng.randrange((end - start).days + 1))

    def moment(self, d: date, first_hour: int = 0, last_hour: int = 23) -> datetime:
        return datetime.combine(d, time(self.rng.randint(first_hour, last_hour), self.rng.randrange(60)))

    def count(self, rates: tuple[tuple[int, float], ...], years: float) -> int:
        """How many events at the age-banded yearly `rates` over `years` (Poisson)."""
        rate = _banded(rates, self.age) * years
        n, threshold, product = 0, math.exp(-rate), self.rng.random()
        while product > threshold:
            n += 1
            product *= self.rng.random()
        return n

    def clinician(self) -> str:
        given = self.rng.choice(GIVEN_FEMALE + GIVEN_MALE)
        return f"{given} {self.rng.choice(FAMILY)}"

    def issue_series(self, key: str, per_year: int, start: date, quantity: int = 1) -> None:
        """`per_year` issues of `key` spread over the last year (from `start` at the earliest)."""
        begin = max(start, self.as_of - timedelta(days=365))
        for _ in range(per_year):
            on = self.day(begin, self.as_of)
            if on >= begin:
                self.s.issues.append(_issue(key, on, quantity))

    # --- parts of the story ------------------------------------------------------------------------
    def conditions(self) -> None:
        for key, lowest, bands in LTCS:
            if self.age < lowest:
                continue
            chance = _banded(bands, self.age)
            if key == "essential_hypertension" and self.p.ethnicity in BLACK:
                chance *= 1.35
            if key == "hypothyroidism" and self.p.sex == "female":
                chance *= 2.5
            if self.rng.random() < chance:
                first = self.p.birth_date + timedelta(days=365 * lowest)
                onset = self.day(max(first, self.as_of - timedelta(days=365 * 25)), self.as_of)
                self.s.problems.append(Problem(key, onset))
                self.has.add(key)

    def asthma(self) -> None:
        if self.age < 3 or self.rng.random() >= ASTHMA:
            return
        onset = self.day(self.p.birth_date + timedelta(days=3 * 365), self.as_of)
        if self.rng.random() < ASTHMA_RESOLVED and (self.until - onset).days > 400:
            resolved = self.day(onset + timedelta(days=365), self.until)
            self.s.problems.append(Problem("asthma", onset, resolved))
            self.s.issues.append(_issue("salbutamol_inhaler", onset + timedelta(days=3), 1))
            return
        self.s.problems.append(Problem("asthma", onset))
        self.has.add("asthma")
        if self.rng.random() < ASTHMA_LAPSED:  # treatment stopped over a year ago
            last = self.day(onset, self.as_of - timedelta(days=400))
            if last < self.as_of - timedelta(days=365):
                self.s.issues.append(_issue("salbutamol_inhaler", last, 1))
                return
        name, _, saba, ics, steroids, emergency = self.rng.choices(ASTHMA_PROFILES,
                                                                   weights=[p[1] for p in ASTHMA_PROFILES])[0]
        start = onset
        reliever = "salbutamol_inhaler"
        n_saba, n_ics = self.rng.randint(*saba), self.rng.randint(*ics)
        if name == "laba-without-ics":
            self.issue_series("salmeterol_inhaler", self.rng.randint(3, 8), start)
        if n_ics:
            if self.age >= 12 and self.rng.random() < 0.35:  # AIR or MART: ICS/formoterol
                preventer = self.rng.choice(("budesonide_formoterol_200_6", "beclometasone_formoterol_100_6"))
                n_saba = n_saba // 3
            elif self.age >= 12 and self.rng.random() < 0.2:
                preventer = "fluticasone_salmeterol_250_25"
            else:
                preventer = "beclometasone_inhaler"
            self.s.issues.append(Issue(preventer, self.day(start, self.as_of - timedelta(days=300)), "plan", 1))
            self.issue_series(preventer, n_ics, start)
        if n_saba == 0 and not n_ics:
            n_saba = 1  # on the register: treated in the last year
        if n_saba:
            self.s.issues.append(Issue(reliever, self.day(start, self.as_of - timedelta(days=300)), "plan", 1))
            self.issue_series(reliever, n_saba, start)
        for _ in range(self.rng.randint(*steroids)):
            on = self.day(self.as_of - timedelta(days=365), self.as_of)
            self.s.issues.append(_issue("prednisolone_5mg", on, 40))
            self.s.problems.append(Problem("acute_asthma_exacerbation", on, on + timedelta(days=14)))
            if self.rng.random() < 0.5:
                self.s.issues.append(_issue("amoxicillin_500", on, 15))
        if self.rng.random() < emergency:
            on = self.day(self.as_of - timedelta(days=365), self.as_of)
            visit = self.emergency(on, "acute_asthma_exacerbation", admit=self.rng.random() < 0.4)
            if visit.admitted is not None and visit.left is not None and visit.disposition == "home":
                noted = visit.left.date() + timedelta(days=7)  # the practice codes it from the discharge summary
                if noted <= self.as_of:
                    self.s.findings.append(Finding("asthma_emergency_admission", noted))
        if self.rng.random() < 0.7:
            self.s.findings.append(Finding("asthma_review", self.day(self.as_of - timedelta(days=365), self.as_of)))
        elif self.rng.random() < 0.3:
            self.s.findings.append(Finding("asthma_monitoring", self.day(self.as_of - timedelta(days=365),
                                                                         self.as_of)))

    def treatments(self) -> None:
        for condition, medicines in REPEATS.items():
            if condition not in self.has:
                continue
            for key, share in medicines:
                if self.rng.random() >= share:
                    continue
                if key in ("salbutamol_inhaler", "fluticasone_salmeterol_250_25") and "asthma" in self.has:
                    continue
                onset = next(p.onset for p in self.s.problems if p.key == condition)
                self.s.issues.append(Issue(key, onset, "plan", _pack(key)))
                per_year = 4 if key.endswith("inhaler") else 12
                self.issue_series(key, per_year if self.rng.random() < 0.85 else per_year // 2, onset, _pack(key))

    def blood_pressure(self) -> None:
        diagnosed = "essential_hypertension" in self.has
        if self.age < 18:
            return
        year_ago = self.as_of - timedelta(days=365)
        if diagnosed:
            controlled = self.rng.random() < 0.64
            for _ in range(self.rng.randint(1, 3)):
                sys_, dia = (self.rng.randint(112, 139), self.rng.randint(65, 89)) if controlled else \
                    (self.rng.randint(141, 178), self.rng.randint(78, 104))
                if not controlled and self.rng.random() < 0.03:
                    sys_, dia = self.rng.randint(181, 205), self.rng.randint(100, 125)
                self.s.readings.append(Reading(self.day(year_ago, self.as_of), sys_, dia, "clinic"))
            if self.rng.random() < 0.15:
                self.s.readings.append(Reading(self.day(year_ago, self.as_of), self.rng.randint(118, 150),
                                               self.rng.randint(70, 92), "home"))
            return
        if self.rng.random() >= (0.75 if self.age >= 40 else 0.45):
            return
        on = self.day(self.as_of - timedelta(days=5 * 365), self.as_of)
        if self.age >= 40 and self.rng.random() < 0.07:  # high and not (yet) diagnosed: case finding's target
            band = self.rng.random()
            if band < 0.04:
                sys_, dia = self.rng.randint(181, 200), self.rng.randint(105, 125)
            elif band < 0.25:
                sys_, dia = self.rng.randint(161, 179), self.rng.randint(95, 110)
            else:
                sys_, dia = self.rng.randint(140, 159), self.rng.randint(80, 99)
            self.s.readings.append(Reading(self.day(year_ago, self.as_of), sys_, dia, "clinic"))
            return
        self.s.readings.append(Reading(on, self.rng.randint(100, 138), self.rng.randint(60, 88), "clinic"))

    def allergies_and_findings(self) -> None:
        for substance, chance, reactions in ALLERGIES:
            if substance == "egg" and self.age > 10:
                continue
            if self.rng.random() < chance:
                reaction = self.rng.choice(reactions)
                self.s.allergies.append(Allergy(substance, reaction, self.day(self.p.birth_date, self.as_of),
                                                severe=reaction in ("anaphylaxis", "angioedema")))
        if self.age >= 16:
            smoker = self.rng.random()
            key = "smoking_current" if smoker < 0.12 else "smoking_ex" if smoker < 0.35 else "smoking_never"
            self.s.findings.append(Finding(key, self.day(self.as_of - timedelta(days=3 * 365), self.as_of)))
            if self.rng.random() < 0.6:
                bmi = round(max(16.0, self.rng.gauss(27, 5)), 1)
                self.s.findings.append(Finding("bmi", self.day(self.as_of - timedelta(days=3 * 365), self.as_of),
                                               bmi, "kg/m2"))
        if ({"learning_disability", "autism"} & self.has) and self.rng.random() < 0.6:
            self.s.alerts.append("reasonable_adjustment")

    def emergency(self, on: date, diagnosis: str, admit: bool, by_ambulance: bool | None = None,
                  provider: str | None = None) -> Visit:
        """An emergency department attendance (and admission when `admit`)."""
        trust = provider or self.care.provider("acute", self.p, self.rng)
        arrived = self.moment(on)
        ambulance = self.rng.random() < (0.25 if self.age < 65 else 0.5) if by_ambulance is None else by_ambulance
        admitted = left = None
        wards: tuple[tuple[datetime, str], ...] = ()
        disposition = "home"
        if admit:
            admitted = arrived + timedelta(hours=self.rng.randint(2, 11), minutes=self.rng.randrange(60))
            first = self.rng.choice(WARDS if self.age >= 16 else ("Children's Ward",))
            wards = ((admitted, first),)
            stay = timedelta(days=self.rng.choice((1, 1, 2, 3, 4, 6, 9, 14)), hours=self.rng.randint(0, 12))
            if self.age >= 16 and self.rng.random() < 0.25:
                wards += ((admitted + stay / 2, self.rng.choice([w for w in WARDS if w != first])),)
            left = admitted + stay
        else:
            left = arrived + timedelta(hours=self.rng.randint(1, 7), minutes=self.rng.randrange(60))
        if self.p.died_on is not None and left.date() >= self.p.died_on:
            left, disposition = datetime.combine(self.p.died_on, time(self.rng.randint(0, 23))), "died"
            if left < arrived:
                left = arrived + timedelta(hours=2)
        if left.date() > self.as_of:
            left = None
        updated = arrived + timedelta(minutes=40) if self.rng.random() < 0.08 else None
        visit = Visit("emergency", trust, self.rng.choice(self.care.sites[trust]), self.ids.next(f"{trust}V", 9),
                      arrived, admitted, left, diagnosis, wards, disposition, ambulance, updated, self.clinician())
        self.s.visits.append(visit)
        if ambulance:
            self.incident(arrived - timedelta(minutes=self.rng.randint(30, 90)), diagnosis, trust)
        return visit

    def hospital(self) -> None:
        start = self.as_of - timedelta(days=2 * 365)
        for _ in range(self.count(ED_RATE, 2)):
            ages = [d for lowest, d in ED_DIAGNOSES if self.age >= lowest]
            self.emergency(self.day(start, self.as_of), self.rng.choice(ages[-1]),
                           admit=self.rng.random() < _banded(ADMIT, self.age))
        if self.p.died_on is not None and self.rng.random() < 0.45 and \
                not any(v.disposition == "died" for v in self.s.visits):  # died in hospital
            stay = self.rng.randint(1, 20)
            visit = self.emergency(self.p.died_on - timedelta(days=stay), self.rng.choice(("pneumonia", "sepsis")),
                                   admit=True)
            if visit.disposition != "died":
                self.s.visits[-1] = replace(visit, disposition="died",
                                                   left=datetime.combine(self.p.died_on, time(4, 30)))
        for _ in range(self.count(ELECTIVE, 2) if self.age >= 18 else 0):
            trust = self.care.provider("acute", self.p, self.rng)
            arrived = self.moment(self.day(start, self.as_of), 7, 9)
            left = arrived + timedelta(days=self.rng.choice((0, 1, 1, 2, 3, 5)), hours=self.rng.randint(4, 9))
            ward = self.rng.choice(("Day Surgery Unit", "Surgical Ward", "Orthopaedic Ward"))
            self.s.visits.append(Visit("elective", trust, self.rng.choice(self.care.sites[trust]),
                                       self.ids.next(f"{trust}V", 9), arrived, arrived, left if left.date() <=
                                       self.as_of else None, self.rng.choice(("osteoarthritis", "abdominal_pain")),
                                       ((arrived, ward),), "home", False, None, self.clinician()))

    def outpatients(self) -> None:
        if self.p.died_on is not None:
            return
        n = self.count(OUTPATIENT, 1.25)
        for _ in range(n):
            trust = self.care.provider("acute", self.p, self.rng)
            specialty = "paediatrics" if self.age < 16 else self.rng.choice(SPECIALTIES[:8] + SPECIALTIES[9:])
            when = self.as_of + timedelta(days=self.rng.randint(-365, 84))
            start = datetime.combine(when, time(self.rng.randint(9, 16), self.rng.choice((0, 15, 30, 45))))
            booked = when - timedelta(days=self.rng.randint(14, 70))
            moved_from = None
            future = when > self.as_of
            draw = self.rng.random()
            if future:
                status = "cancelled" if draw < 0.05 else "booked"
            else:
                status = "noshow" if draw < 0.07 else "cancelled" if draw < 0.12 else "fulfilled"
            if status != "cancelled" and self.rng.random() < 0.1:
                moved_from = start - timedelta(days=self.rng.randint(3, 14))
                if moved_from.date() <= booked:
                    moved_from = None
            self.s.appointments.append(Appointment(
                trust, self.rng.choice(self.care.sites[trust]), self.ids.next(f"{trust}A", 9), specialty, start,
                self.rng.choice((15, 20, 30)), booked, status, moved_from))

    def incident(self, called: datetime, impression: str, destination: str | None) -> Incident:
        outcome = "conveyed" if destination else self.rng.choice(("see-and-treat", "see-and-treat", "hear-and-treat"))
        crew = outcome != "hear-and-treat"
        incident = Incident(self.ids.next("LAS", 9), called, outcome, impression, destination,
                            self.rng.randint(0, 9) if crew else None,
                            self.rng.randint(55, 130) if crew else None, self.rng.randint(12, 30) if crew else None,
                            self.rng.randint(88, 100) if crew else None)
        self.s.incidents.append(incident)
        return incident

    def ambulance_and_111(self) -> None:
        start = self.as_of - timedelta(days=2 * 365)
        for _ in range(self.count(AMBULANCE, 2)):
            on = self.day(start, self.as_of)
            self.incident(self.moment(on), "fall" if self.age >= 65 else self.rng.choice(("chest_pain", "syncope")),
                          None)
        for _ in range(self.count(CALLS_111, 1)):
            on = self.day(self.as_of - timedelta(days=364), self.as_of)
            called = self.moment(on)
            disposition = self.rng.choices([d for d, _ in DISPOSITIONS_111], [w for _, w in DISPOSITIONS_111])[0]
            incident_id = None
            if disposition == "ambulance-dispatched":
                incident_id = self.incident(called + timedelta(minutes=20), "chest_pain", None).incident_id
            self.s.calls.append(Call111(self.ids.next("111C", 9), called, self.rng.choice(SYMPTOMS_111),
                                        disposition, incident_id))

    def mental_health(self) -> None:
        if self.age < 16:
            return
        rate = 0.25 if "schizophrenia" in self.has else 0.03 if "depression" in self.has else 0.004
        for _ in range(self.count(((0, rate),), 2)):
            trust = self.care.provider("mental-health", self.p, self.rng)
            arrived = self.moment(self.day(self.as_of - timedelta(days=2 * 365), self.as_of))
            admitted = self.rng.random() < 0.12
            kind = "mh-admission" if admitted else "mh-crisis"
            left = arrived + (timedelta(days=self.rng.randint(7, 60)) if admitted else timedelta(hours=3))
            wards = ((arrived, self.rng.choice(("Acute Ward", "Psychiatric Intensive Care Unit"))),) if admitted else ()
            self.s.visits.append(Visit(kind, trust, self.care.sites[trust][0], self.ids.next(f"{trust}V", 9), arrived,
                                       arrived if admitted else None, left if left.date() <= self.as_of else None,
                                       "mental_health_crisis", wards, "home", False, None, self.clinician()))

    def social_care(self) -> None:
        borough = next(b for b in BOROUGHS if b.code == self.p.borough)
        council = gss_code(borough)
        need = 0.0
        if self.age >= 65:
            need = 0.15 if self.age >= 80 else 0.05
        if "learning_disability" in self.has and self.age >= 18:
            need = 0.45
        if "dementia" in self.has:
            need = max(need, 0.4)
        if self.rng.random() < need:
            service = self.rng.choices(("home-care", "residential", "day-care", "direct-payment"), (55, 20, 10, 15))[0]
            start = self.day(self.as_of - timedelta(days=4 * 365), self.as_of)
            self.s.packages.append(CarePackage(
                council, self.ids.next(f"SC{borough.code}", 7), service, start, self.p.died_on,
                float(self.rng.choice((5, 7, 10, 14, 21))) if service == "home-care" else None,
                self.clinician(), f"Adult Social Care - {borough.name} Locality Team"))
        if self.age < 18 and self.rng.random() < 0.0045:  # on a child protection plan
            start = self.day(self.as_of - timedelta(days=500), self.as_of)
            self.s.packages.append(CarePackage(
                council, self.ids.next(f"SC{borough.code}", 7), "child-protection-plan", start, None, None,
                self.clinician(), f"Children's Social Care - {borough.name} Safeguarding Team"))
            self.s.alerts.append("child_protection")

    def cancer(self) -> None:
        for _ in range(self.count(CANCER_REFERRALS, 1.25)):
            referred = self.day(self.as_of - timedelta(days=456), self.as_of)
            site = self._cancer_site()
            received = referred + timedelta(days=self.rng.choice((0, 0, 1, 1, 2)))
            first = self.care.provider("acute", self.p, self.rng)
            first_seen = received + timedelta(days=int(self.rng.triangular(2, 21, 7)))
            diagnostic = first_seen + timedelta(days=int(self.rng.triangular(0, 16, 2)))
            told = diagnostic + timedelta(days=int(self.rng.triangular(1, 22, 3)))
            found = self.rng.random() < CANCER_FOUND
            cancer = {"breast": "breast_cancer", "lower-gi": "colorectal_cancer", "lung": "lung_cancer",
                      "urology": "prostate_cancer"}.get(site, "colorectal_cancer") if found else None
            pathway = CancerPathway(self.ids.next("PPI", 10), site, referred, received, first, first_seen,
                                    diagnostic, told, cancer)
            if found:
                treating = first
                sent = got = None
                if self.rng.random() < IPT:
                    treating = self.rng.choice([c for c in SPECIALIST_CENTRES if c != first])
                    sent = diagnostic + timedelta(days=int(self.rng.triangular(0, 30, 8)))
                    got = sent + timedelta(days=self.rng.randint(1, 6))
                dtt = max(told, got or told) + timedelta(days=int(self.rng.triangular(2, 34, 10)))
                treated = dtt + timedelta(days=int(self.rng.triangular(2, 42, 9)))
                pathway = replace(pathway, transfer_sent=sent, transfer_received=got,
                                           treating_provider=treating, decision_to_treat=dtt, treated=treated)
                self.s.problems.append(Problem(cancer or "colorectal_cancer", told))
            self.s.pathways.append(_cut_pathway(pathway, min(self.as_of, self.until)))

    def _cancer_site(self) -> str:
        sites = ["lower-gi", "lung", "nss", "skin"] + (["breast", "breast", "breast"] if self.p.sex == "female"
                                                        else ["urology", "urology"])
        site = self.rng.choice(sites)
        return "lower-gi" if site == "skin" else site

    def end_of_life(self) -> None:
        last_year = self.p.died_on is not None
        frail = self.age >= 80 and bool({"heart_failure", "dementia", "copd"} & self.has)
        if not ((last_year and self.rng.random() < 0.4) or (frail and self.rng.random() < 0.12)):
            return
        end = self.p.died_on - timedelta(days=14) if self.p.died_on else self.as_of
        recorded = self.day(end - timedelta(days=200), end)
        place = self.rng.choices(("home", "care-home", "hospice", "hospital"), (50, 20, 20, 10))[0]
        self.s.plan = EndOfLifePlan(recorded, "dnacpr" if self.rng.random() < 0.8 else "for-cpr", place,
                                    self.rng.choice(WHAT_MATTERS), recorded + timedelta(days=180))
        if last_year and self.rng.random() < 0.5:
            on = self.day(self.until - timedelta(days=21), self.until)
            for key in ("morphine_10_1", "midazolam_10_2", "haloperidol_5_1", "hyoscine_butylbromide_20_1"):
                self.s.issues.append(_issue(key, on, 10))

    def labs(self) -> None:
        """Blood tests: at admission, and the GP's monitoring of long-term conditions."""
        for v in self.s.visits:
            if v.admitted is not None and v.kind in ("emergency", "elective"):
                for panel in ("full_blood_count", "urea_electrolytes", "crp"):
                    self.lab(v.provider, v.admitted, panel, v.provider, ill=v.kind == "emergency")
        gp_panels: list[str] = []
        if "type2_diabetes" in self.has:
            gp_panels += ["hba1c", "hba1c", "lipids", "urea_electrolytes"]
        if {"ckd3", "essential_hypertension"} & self.has:
            gp_panels += ["urea_electrolytes"]
        if self.age >= 18 and self.rng.random() < 0.15:
            gp_panels += ["full_blood_count"]
        lab = self.care.acute_near[self.p.borough][0]
        for panel in gp_panels:
            when = self.moment(self.day(self.as_of - timedelta(days=365), self.as_of), 8, 12)
            self.lab(lab, when, panel, self.p.practice, ill=False)

    def lab(self, provider: str, when: datetime, panel: str, requester: str, ill: bool) -> None:
        if when.date() > self.until:
            return
        tests = PANEL_TESTS[panel]
        results = tuple((t, self._value(t, ill)) for t in tests)
        self.s.labs.append(LabReport(provider, self.ids.next(f"{provider}L", 9), when, panel, results, requester))

    def _value(self, test: str, ill: bool) -> float:
        r = self.rng
        ckd = "ckd3" in self.has
        if test == "haemoglobin":
            return float(round(r.gauss(138 if self.p.sex == "male" else 126, 14) - (10 if ill else 0)))
        if test == "white_cell_count":
            return round(r.gauss(12.5 if ill else 7.0, 2.5 if ill else 1.8), 1)
        if test == "platelets":
            return float(round(r.gauss(260, 60)))
        if test == "sodium":
            return float(round(r.gauss(138, 3)))
        if test == "potassium":
            return round(r.gauss(4.3, 0.45), 1)
        if test == "creatinine":
            return float(round(r.gauss(140, 25) if ckd else r.gauss(80, 15)))
        if test == "egfr":
            return float(round(r.uniform(32, 59) if ckd else min(90.0, r.gauss(85, 10))))
        if test == "hba1c":
            return float(round(r.gauss(58, 10) if "type2_diabetes" in self.has else r.gauss(36, 4)))
        if test == "total_cholesterol":
            return round(r.gauss(4.8, 0.9), 1)
        if test == "crp":
            return float(round(abs(r.gauss(60, 40)) if ill else abs(r.gauss(3, 2))))
        raise ValueError(f"no values for test {test}")


PANEL_TESTS = {
    "full_blood_count": ("haemoglobin", "white_cell_count", "platelets"),
    "urea_electrolytes": ("sodium", "potassium", "creatinine", "egfr"),
    "hba1c": ("hba1c",),
    "lipids": ("total_cholesterol",),
    "crp": ("crp",),
}
PACKS = {"metformin_500": 56, "apixaban_5": 56, "paracetamol_500": 100}


def _pack(key: str) -> int:
    return 1 if key.endswith(("inhaler", "turbohaler")) else PACKS.get(key, 28)


def _issue(key: str, on: date, quantity: int) -> Issue:
    return Issue(key, on, "order", quantity)


def _banded(bands: tuple[tuple[int, float], ...], age: int) -> float:
    value = 0.0
    for lowest, v in bands:
        if age >= lowest:
            value = v
    return value


def age_on(born: date, on: date) -> int:
    """Age in whole years on a day."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _cut_pathway(p: CancerPathway, until: date) -> CancerPathway:
    """The pathway as recorded by `until`: milestones still in the future are not known yet."""
    def known(d: date | None) -> date | None:
        return d if d is not None and d <= until else None
    told = known(p.told)
    return replace(p, first_seen=known(p.first_seen), diagnostic=known(p.diagnostic), told=told,
                   cancer=p.cancer if told else None, transfer_sent=known(p.transfer_sent),
                   transfer_received=known(p.transfer_received), decision_to_treat=known(p.decision_to_treat),
                   treated=known(p.treated))
