"""London's geography as the synthetic population uses it: the five integrated care systems (ICSs),
their 32 boroughs and the City of London, each with its approximate population (Census 2021, in
thousands, rounded) and postcode districts that lie (mostly) within it.

Postcode districts are real outward codes; the inward codes the generator adds are made up, so a
synthetic address is plausible but is nobody's address.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ics:
    code: str  # short code used in synthetic identifiers
    name: str


@dataclass(frozen=True)
class Borough:
    code: str  # short code used in synthetic identifiers
    name: str
    ics: str  # Ics.code
    population_k: int  # Census 2021, thousands (rounded)
    districts: tuple[str, ...]  # postcode districts


ICSS: tuple[Ics, ...] = (
    Ics("NCL", "North Central London"),
    Ics("NEL", "North East London"),
    Ics("NWL", "North West London"),
    Ics("SEL", "South East London"),
    Ics("SWL", "South West London"),
)

BOROUGHS: tuple[Borough, ...] = (
    Borough("BNT", "Barnet", "NCL", 389, ("N2", "N3", "N11", "N12", "N14", "N20", "EN4", "EN5", "NW4", "NW7", "NW9",
                                         "NW11", "HA8")),
    Borough("CMD", "Camden", "NCL", 210, ("NW1", "NW3", "NW5", "NW6", "WC1")),
    Borough("ENF", "Enfield", "NCL", 330, ("EN1", "EN2", "EN3", "N9", "N13", "N18", "N21")),
    Borough("HGY", "Haringey", "NCL", 264, ("N4", "N8", "N10", "N15", "N17", "N22")),
    Borough("ISL", "Islington", "NCL", 217, ("N1", "N5", "N7", "N19", "EC1")),
    Borough("BDG", "Barking and Dagenham", "NEL", 219, ("IG11", "RM8", "RM9", "RM10")),
    Borough("COL", "City of London", "NEL", 9, ("EC2", "EC3", "EC4")),
    Borough("HCK", "Hackney", "NEL", 259, ("E2", "E5", "E8", "E9", "N16")),
    Borough("HAV", "Havering", "NEL", 262, ("RM1", "RM2", "RM3", "RM5", "RM7", "RM11", "RM12", "RM14")),
    Borough("NWM", "Newham", "NEL", 351, ("E6", "E7", "E12", "E13", "E15", "E16")),
    Borough("RDB", "Redbridge", "NEL", 310, ("IG1", "IG2", "IG3", "IG4", "IG5", "IG6", "IG8", "E18")),
    Borough("TWH", "Tower Hamlets", "NEL", 311, ("E1", "E3", "E14")),
    Borough("WFT", "Waltham Forest", "NEL", 278, ("E4", "E10", "E11", "E17")),
    Borough("BRT", "Brent", "NWL", 339, ("NW2", "NW10", "HA0", "HA9")),
    Borough("EAL", "Ealing", "NWL", 367, ("W3", "W5", "W7", "W13", "UB1", "UB2", "UB5", "UB6")),
    Borough("HMF", "Hammersmith and Fulham", "NWL", 183, ("W6", "W12", "W14", "SW6")),
    Borough("HRW", "Harrow", "NWL", 261, ("HA1", "HA2", "HA3", "HA5")),
    Borough("HIL", "Hillingdon", "NWL", 306, ("UB3", "UB4", "UB7", "UB8", "UB10", "HA4")),
    Borough("HNS", "Hounslow", "NWL", 288, ("TW3", "TW4", "TW5", "TW7", "TW8", "W4")),
    Borough("KEC", "Kensington and Chelsea", "NWL", 143, ("W8", "W10", "W11", "SW3", "SW5", "SW7", "SW10")),
    Borough("WSM", "Westminster", "NWL", 205, ("W1", "W2", "W9", "SW1", "NW8")),
    Borough("BXY", "Bexley", "SEL", 246, ("DA5", "DA6", "DA7", "DA14", "DA15", "DA16")),
    Borough("BRY", "Bromley", "SEL", 330, ("BR1", "BR2", "BR3", "BR4", "BR5", "BR6", "BR7")),
    Borough("GRE", "Greenwich", "SEL", 289, ("SE2", "SE3", "SE7", "SE9", "SE10", "SE18", "SE28")),
    Borough("LBH", "Lambeth", "SEL", 317, ("SE11", "SE24", "SE27", "SW2", "SW4", "SW8", "SW9", "SW16")),
    Borough("LEW", "Lewisham", "SEL", 300, ("SE4", "SE6", "SE12", "SE13", "SE14", "SE23", "SE26")),
    Borough("SWK", "Southwark", "SEL", 307, ("SE1", "SE5", "SE15", "SE16", "SE17", "SE21", "SE22")),
    Borough("CRY", "Croydon", "SWL", 391, ("CR0", "CR2", "CR5", "CR7", "CR8", "SE25")),
    Borough("KTT", "Kingston upon Thames", "SWL", 168, ("KT1", "KT2", "KT3", "KT5", "KT6", "KT9")),
    Borough("MRT", "Merton", "SWL", 215, ("SW19", "SW20", "CR4", "SM4")),
    Borough("RIC", "Richmond upon Thames", "SWL", 195, ("TW1", "TW2", "TW9", "TW10", "TW11", "TW12", "SW13",
                                                         "SW14")),
    Borough("STN", "Sutton", "SWL", 209, ("SM1", "SM2", "SM3", "SM5", "SM6")),
    Borough("WND", "Wandsworth", "SWL", 328, ("SW11", "SW12", "SW15", "SW17", "SW18")),
)

LONDON_POPULATION_K = sum(b.population_k for b in BOROUGHS)


def boroughs_of(ics: str) -> tuple[Borough, ...]:
    return tuple(b for b in BOROUGHS if b.ics == ics)
