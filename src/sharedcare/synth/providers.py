"""The organisations of London's health and care services that the synthetic directory names.

NHS trusts carry their real names and ODS-style codes as commonly published; the directory is
synthetic reference data and these codes are not checked against the live ODS register (docs/synth.md).
GP practices, PCNs, care homes and council teams are made up by the generator.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    name: str
    borough: str  # geography.Borough.code


@dataclass(frozen=True)
class Provider:
    code: str
    name: str
    kind: str  # acute, ambulance, nhs111, mental-health, community
    ics: str  # the ICS it mainly serves ("LDN": all of London)
    sites: tuple[Site, ...]


PROVIDERS: tuple[Provider, ...] = (
    # acute trusts
    Provider("RRV", "University College London Hospitals NHS Foundation Trust", "acute", "NCL",
             (Site("University College Hospital", "CMD"),)),
    Provider("RAL", "Royal Free London NHS Foundation Trust", "acute", "NCL",
             (Site("Royal Free Hospital", "CMD"), Site("Barnet Hospital", "BNT"), Site("Chase Farm Hospital", "ENF"))),
    Provider("RAP", "North Middlesex University Hospital NHS Trust", "acute", "NCL",
             (Site("North Middlesex University Hospital", "ENF"),)),
    Provider("RKE", "Whittington Health NHS Trust", "acute", "NCL", (Site("Whittington Hospital", "ISL"),)),
    Provider("R1H", "Barts Health NHS Trust", "acute", "NEL",
             (Site("Royal London Hospital", "TWH"), Site("Whipps Cross University Hospital", "WFT"),
              Site("Newham University Hospital", "NWM"), Site("St Bartholomew's Hospital", "COL"))),
    Provider("RQX", "Homerton Healthcare NHS Foundation Trust", "acute", "NEL",
             (Site("Homerton University Hospital", "HCK"),)),
    Provider("RF4", "Barking, Havering and Redbridge University Hospitals NHS Trust", "acute", "NEL",
             (Site("Queen's Hospital", "HAV"), Site("King George Hospital", "RDB"))),
    Provider("RYJ", "Imperial College Healthcare NHS Trust", "acute", "NWL",
             (Site("St Mary's Hospital", "WSM"), Site("Charing Cross Hospital", "HMF"),
              Site("Hammersmith Hospital", "HMF"))),
    Provider("RQM", "Chelsea and Westminster Hospital NHS Foundation Trust", "acute", "NWL",
             (Site("Chelsea and Westminster Hospital", "KEC"), Site("West Middlesex University Hospital", "HNS"))),
    Provider("R1K", "London North West University Healthcare NHS Trust", "acute", "NWL",
             (Site("Northwick Park Hospital", "HRW"), Site("Ealing Hospital", "EAL"))),
    Provider("RAS", "The Hillingdon Hospitals NHS Foundation Trust", "acute", "NWL",
             (Site("Hillingdon Hospital", "HIL"),)),
    Provider("RJ1", "Guy's and St Thomas' NHS Foundation Trust", "acute", "SEL",
             (Site("St Thomas' Hospital", "LBH"), Site("Guy's Hospital", "SWK"))),
    Provider("RJZ", "King's College Hospital NHS Foundation Trust", "acute", "SEL",
             (Site("King's College Hospital", "SWK"), Site("Princess Royal University Hospital", "BRY"))),
    Provider("RJ2", "Lewisham and Greenwich NHS Trust", "acute", "SEL",
             (Site("University Hospital Lewisham", "LEW"), Site("Queen Elizabeth Hospital", "GRE"))),
    Provider("RJ7", "St George's University Hospitals NHS Foundation Trust", "acute", "SWL",
             (Site("St George's Hospital", "WND"),)),
    Provider("RJ6", "Croydon Health Services NHS Trust", "acute", "SWL", (Site("Croydon University Hospital", "CRY"),)),
    Provider("RAX", "Kingston and Richmond NHS Foundation Trust", "acute", "SWL", (Site("Kingston Hospital", "KTT"),)),
    Provider("RVR", "Epsom and St Helier University Hospitals NHS Trust", "acute", "SWL",
             (Site("St Helier Hospital", "STN"),)),
    # London-wide services
    Provider("RRU", "London Ambulance Service NHS Trust", "ambulance", "LDN", (Site("Waterloo headquarters", "LBH"),)),
    Provider("Y111L", "NHS 111 London", "nhs111", "LDN", (Site("NHS 111 London contact centre", "SWK"),)),
    # mental health trusts
    Provider("RRP", "North London NHS Foundation Trust", "mental-health", "NCL", (Site("St Pancras Hospital", "CMD"),)),
    Provider("RWK", "East London NHS Foundation Trust", "mental-health", "NEL", (Site("Mile End Hospital", "TWH"),)),
    Provider("RAT", "North East London NHS Foundation Trust", "mental-health", "NEL",
             (Site("Goodmayes Hospital", "RDB"),)),
    Provider("RV3", "Central and North West London NHS Foundation Trust", "mental-health", "NWL",
             (Site("St Charles Centre for Health and Wellbeing", "KEC"),)),
    Provider("RKL", "West London NHS Trust", "mental-health", "NWL", (Site("St Bernard's Hospital", "EAL"),)),
    Provider("RV5", "South London and Maudsley NHS Foundation Trust", "mental-health", "SEL",
             (Site("Maudsley Hospital", "SWK"),)),
    Provider("RPG", "Oxleas NHS Foundation Trust", "mental-health", "SEL", (Site("Queen Mary's Hospital", "BXY"),)),
    Provider("RQY", "South West London and St George's Mental Health NHS Trust", "mental-health", "SWL",
             (Site("Springfield University Hospital", "WND"),)),
    # community providers
    Provider("RYX", "Central London Community Healthcare NHS Trust", "community", "NWL",
             (Site("Parsons Green Health Centre", "HMF"),)),
    Provider("RY9", "Hounslow and Richmond Community Healthcare NHS Trust", "community", "SWL",
             (Site("Teddington Memorial Hospital", "RIC"),)),
)
