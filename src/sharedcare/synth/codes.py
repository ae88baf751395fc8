"""Clinical codes the synthetic London generator uses.

Every code below was looked up in public sources before it was written down. Where each family was checked:

* Conditions (SNOMED CT): public code lists and FHIR examples found by exact-code search; asthma,
  hypertension and the "resolved" codes also from the shared reference ``pathfinders.md`` and the
  NHS PCD ``HYPRES_COD`` refset copy in ``opensafely/winter-pressures-phase-II``. ICD-10 codes are
  the usual ICD-10 (WHO 2016 / UK 5th edition) codes for the condition.
* Medicines (dm+d VMP ids and BNF codes): OpenSAFELY/opencodelists CSVs (``code, term, dmd_id,
  dmd_type, bnf_code``) in ``opensafely/ckd-deprescribing`` (statins, PPIs, diabetes drugs),
  ``opensafely/amr-uom-brit`` (antibiotics), ``opensafely/risk-factors-research`` (prednisolone),
  ``opensafely/doacs-covid19`` (apixaban), ``opensafely/polypharmacy-deprescribing-dementia``
  (amlodipine BNF), ``opensafely/deaths-at-home-covid19`` (subcutaneous end-of-life injections), and an
  OpenSAFELY SQL code list of inhaled corticosteroids with VMP id + BNF presentation code.
* Vaccines (dm+d AMP ids): NHS England immunisation FHIR API test data and a UK Core Immunization
  demo client. These are product (AMP) codes; see the comment on ``VACCINES``.
* Immunisation procedures and not-given reasons: ``pathfinders.md`` section 3.4 (UK Core
  ``VaccinationProcedure`` / ``ReasonImmunizationNotAdministered`` expansions); some displays
  cross-checked against NHS England immunisation API test data.
* Pathology: UK SNOMED observables (the codes the NHS primary-care code-usage statistics show as the
  most used lab codes, and OpenSAFELY numeric-value code lists); request/panel procedure codes from
  ECDS-style investigation lists and FHIR examples.
* Blood pressure: ``pathfinders.md`` section 4.2 (UK Core / GP Connect value sets).
* Allergens, reactions, vital signs, NEWS2, CPR status, encounter types: FHIR examples and code lists
  found by exact-code search (CPR status codes from the NHS End of Life / SCR inclusion dataset page).

Codes and terms are facts; nothing here is copied code. Anything that could not be verified is left
out and listed in an ``UNVERIFIED`` comment next to the table it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

SNOMED = "http://snomed.info/sct"
DMD = "https://dmd.nhs.uk"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Code:
    code: str
    display: str


@dataclass(frozen=True)
class Medicine:
    dmd: str  # dm+d VMP id (string!), or AMP id where the brand matters (said so in a comment)
    display: str  # the dm+d VMP/AMP name exactly
    group: str  # one of the group names used in MEDICINES
    bnf: str  # BNF code prefix (chemical, e.g. "0301011R0") or BNF paragraph ("030101")
    pack: int  # quantity of one issue in `unit`s (e.g. 1 inhaler, 28 tablets, 84 tablets)
    unit: str  # "inhaler", "tablet", "capsule", "ampoule", "dose"


@dataclass(frozen=True)
class Test:
    code: str  # SNOMED CT observable (UK pathology codes)
    display: str
    unit: str  # UCUM unit
    low: float | None  # adult reference range low
    high: float | None  # adult reference range high


@dataclass(frozen=True)
class Condition:
    snomed: Code
    icd10: Code  # ICD-10 (UK, 5th edition) code as used in hospital coding, e.g. "J45.9"


# ---------------------------------------------------------------------------------------------------
# 1. Conditions
# ---------------------------------------------------------------------------------------------------

CONDITIONS: dict[str, Condition] = {
    # Long-term conditions
    "asthma": Condition(Code("195967001", "Asthma"), Code("J45.9", "Asthma, unspecified")),
    "essential_hypertension": Condition(
        Code("59621000", "Essential hypertension"), Code("I10", "Essential (primary) hypertension")
    ),
    "type2_diabetes": Condition(
        Code("44054006", "Type 2 diabetes mellitus"),
        Code("E11.9", "Non-insulin-dependent diabetes mellitus without complications"),
    ),
    "copd": Condition(
        Code("13645005", "Chronic obstructive lung disease"),
        Code("J44.9", "Chronic obstructive pulmonary disease, unspecified"),
    ),
    "chd": Condition(Code("53741008", "Coronary arteriosclerosis"), Code("I25.1", "Atherosclerotic heart disease")),
    # I48.9 is the ICD-10 2016 "unspecified" code (UK 5th edition has I48.0-I48.2 and I48.9).
    "atrial_fibrillation": Condition(
        Code("49436004", "Atrial fibrillation"), Code("I48.9", "Atrial fibrillation and atrial flutter, unspecified")
    ),
    "heart_failure": Condition(Code("84114007", "Heart failure"), Code("I50.9", "Heart failure, unspecified")),
    # "Cerebrovascular accident" is stroke not specified as infarction or haemorrhage: ICD-10 I64, not I63.9.
    "stroke": Condition(
        Code("230690007", "Cerebrovascular accident"),
        Code("I64", "Stroke, not specified as haemorrhage or infarction"),
    ),
    "ckd3": Condition(
        Code("433144002", "Chronic kidney disease stage 3"), Code("N18.3", "Chronic kidney disease, stage 3")
    ),
    "depression": Condition(Code("35489007", "Depressive disorder"), Code("F32.9", "Depressive episode, unspecified")),
    "anxiety": Condition(Code("197480006", "Anxiety disorder"), Code("F41.9", "Anxiety disorder, unspecified")),
    "schizophrenia": Condition(Code("58214004", "Schizophrenia"), Code("F20.9", "Schizophrenia, unspecified")),
    # F03 has no 4th character in ICD-10 (NHS hospital coding writes it "F03X").
    "dementia": Condition(Code("52448006", "Dementia"), Code("F03", "Unspecified dementia")),
    "hypothyroidism": Condition(Code("40930008", "Hypothyroidism"), Code("E03.9", "Hypothyroidism, unspecified")),
    "osteoarthritis": Condition(Code("396275006", "Osteoarthritis"), Code("M19.9", "Arthrosis, unspecified")),
    "epilepsy": Condition(Code("84757009", "Epilepsy"), Code("G40.9", "Epilepsy, unspecified")),
    # UK "learning disability" = SNOMED 110359009 Intellectual disability. ICD-10 F70-F79 need a 4th
    # character for behavioural impairment; .9 = without mention of impairment of behaviour.
    "learning_disability": Condition(
        Code("110359009", "Intellectual disability"),
        Code("F79.9", "Unspecified mental retardation without mention of impairment of behaviour"),
    ),
    # F84.0 as requested; the NHS SNOMED->ICD-10 map for 35919005 was not checked (F84.9 is possible).
    "autism": Condition(Code("35919005", "Autism spectrum disorder"), Code("F84.0", "Childhood autism")),
    # Cancers (SNOMED now names these "Malignant neoplasm of ..."; older releases said "Malignant tumour")
    "breast_cancer": Condition(
        Code("254837009", "Malignant neoplasm of breast"), Code("C50.9", "Malignant neoplasm of breast, unspecified")
    ),
    "colorectal_cancer": Condition(
        Code("363406005", "Malignant neoplasm of colon"), Code("C18.9", "Malignant neoplasm of colon, unspecified")
    ),
    "lung_cancer": Condition(
        Code("363358000", "Malignant neoplasm of lung"),
        Code("C34.9", "Malignant neoplasm of bronchus or lung, unspecified"),
    ),
    "prostate_cancer": Condition(
        Code("399068003", "Malignant neoplasm of prostate"), Code("C61", "Malignant neoplasm of prostate")
    ),
    # ED / acute diagnoses
    "acute_asthma_exacerbation": Condition(
        Code("708038006", "Acute exacerbation of asthma"), Code("J45.9", "Asthma, unspecified")
    ),
    "chest_pain": Condition(Code("29857009", "Chest pain"), Code("R07.4", "Chest pain, unspecified")),
    # W19 is an external-cause code (chapter XX); a hospital record pairs it with the injury code.
    "fall": Condition(Code("1912002", "Fall"), Code("W19", "Unspecified fall")),
    "fractured_neck_of_femur": Condition(
        Code("5913000", "Fracture of neck of femur"), Code("S72.0", "Fracture of neck of femur")
    ),
    "pneumonia": Condition(Code("233604007", "Pneumonia"), Code("J18.9", "Pneumonia, unspecified")),
    "uti": Condition(
        Code("68566005", "Urinary tract infectious disease"),
        Code("N39.0", "Urinary tract infection, site not specified"),
    ),
    "cellulitis": Condition(Code("128045006", "Cellulitis"), Code("L03.9", "Cellulitis, unspecified")),
    "sepsis": Condition(Code("91302008", "Sepsis"), Code("A41.9", "Sepsis, unspecified")),
    "head_injury": Condition(Code("82271004", "Injury of head"), Code("S09.9", "Unspecified injury of head")),
    "abdominal_pain": Condition(
        Code("21522001", "Abdominal pain"), Code("R10.4", "Other and unspecified abdominal pain")
    ),
    "syncope": Condition(Code("271594007", "Syncope"), Code("R55", "Syncope and collapse")),
    # Mental health crisis presenting as suicidal ideation: ICD-10 codes suicidal ideation to R45.8.
    # (Self-harm would instead be an injury code plus an X60-X84 external cause.)
    "mental_health_crisis": Condition(
        Code("6471006", "Suicidal thoughts"), Code("R45.8", "Other symptoms and signs involving emotional state")
    ),
}

# "Resolved" codes close a QOF-style register; they have no sensible ICD-10 code.
RESOLVED: dict[str, Code] = {
    "asthma": Code("162660004", "Asthma resolved"),
    "hypertension": Code("162659009", "Hypertension resolved"),  # the only code in PCD refset HYPRES_COD
}


# ---------------------------------------------------------------------------------------------------
# 2. Medicines (dm+d VMPs unless stated)
# ---------------------------------------------------------------------------------------------------

MEDICINES: dict[str, Medicine] = {
    # SABA. BNF presentation 0301011R0AABDBD family; VMP id also in OpenPrescribing / opencodelists tests.
    "salbutamol_inhaler": Medicine(
        "39113611000001102", "Salbutamol 100micrograms/dose inhaler CFC free", "saba", "0301011R0", 1, "inhaler"
    ),
    # ICS (BNF 0302000C0AABFBF)
    "beclometasone_inhaler": Medicine(
        "35908111000001105", "Beclometasone 100micrograms/dose inhaler CFC free", "ics", "0302000C0", 1, "inhaler"
    ),
    # ICS/formoterol (MART/AIR-capable). BNF 0302000K0AAAMAM; this VMP keeps an old core-range id.
    "budesonide_formoterol_200_6": Medicine(
        "134498003",
        "Budesonide 200micrograms/dose / Formoterol 6micrograms/dose dry powder inhaler",
        "ics_formoterol",
        "0302000K0",
        1,
        "inhaler",
    ),
    # BNF 0302000C0AABXBX (generic Fostair 100/6 pMDI)
    "beclometasone_formoterol_100_6": Medicine(
        "12911011000001100",
        "Beclometasone 100micrograms/dose / Formoterol 6micrograms/dose inhaler CFC free",
        "ics_formoterol",
        "0302000C0",
        1,
        "inhaler",
    ),
    # ICS/LABA (BNF 0302000N0AABGBG, generic Seretide 250 Evohaler)
    "fluticasone_salmeterol_250_25": Medicine(
        "320276009",
        "Fluticasone 250micrograms/dose / Salmeterol 25micrograms/dose inhaler CFC free",
        "ics_laba",
        "0302000N0",
        1,
        "inhaler",
    ),
    # LABA. dm+d VMP id verified (dm+d extract rows); BNF chemical code not checked, so paragraph 3.1.1.
    "salmeterol_inhaler": Medicine(
        "10075611000001101", "Salmeterol 25micrograms/dose inhaler CFC free", "laba", "030101", 1, "inhaler"
    ),
    # Oral corticosteroid: 8 x 5mg x 5 days = a 40mg/day 5-day course (BNF 0603020T0AAACAC)
    "prednisolone_5mg": Medicine("325427002", "Prednisolone 5mg tablets", "ocs", "0603020T0", 40, "tablet"),
    # Antibiotics (BNF 0501013B0AAABAB, 0501030I0AAABAB)
    "amoxicillin_500": Medicine("323510009", "Amoxicillin 500mg capsules", "antibiotic", "0501013B0", 15, "capsule"),
    "doxycycline_100": Medicine("324059006", "Doxycycline 100mg capsules", "antibiotic", "0501030I0", 8, "capsule"),
    # Antihypertensives. Amlodipine 5mg tablets keeps the old core-range VMP id; BNF 0206020A0AAAAAA.
    "amlodipine_5": Medicine("319283006", "Amlodipine 5mg tablets", "ccb", "0206020A0", 28, "tablet"),
    # 318902004 in three public sources that agree (a SNOMED browser-linked ACE inhibitor table and two
    # dm+d VMP listings, each with 318900007/318901006 for the 1.25mg/2.5mg capsules); BNF 2.5.5.1.
    "ramipril_5": Medicine("318902004", "Ramipril 5mg capsules", "acei", "0205051", 28, "capsule"),
    # Metabolic / cardiovascular
    "metformin_500": Medicine("42084911000001109", "Metformin 500mg tablets", "metformin", "0601022B0", 56, "tablet"),
    "atorvastatin_20": Medicine("39733011000001106", "Atorvastatin 20mg tablets", "statin", "0212000B0", 28, "tablet"),
    "apixaban_5": Medicine("703908001", "Apixaban 5mg tablets", "anticoagulant", "0208020Z0", 56, "tablet"),
    # Analgesic: VMP id verified; BNF chemical code not checked, so BNF paragraph 4.7.1 (non-opioid analgesics).
    "paracetamol_500": Medicine("322236009", "Paracetamol 500mg tablets", "analgesic", "040701", 100, "tablet"),
    "omeprazole_20": Medicine(
        "42356411000001102", "Omeprazole 20mg gastro-resistant capsules", "ppi", "0103050P0", 28, "capsule"
    ),
    # Anticipatory (just-in-case) end-of-life injections
    "morphine_10_1": Medicine(
        "36128211000001109",
        "Morphine sulfate 10mg/1ml solution for injection ampoules",
        "anticipatory",
        "0407020Q0",
        10,
        "ampoule",
    ),
    # Midazolam: VMP id seen in one source only (a dm+d VMP fixture); BNF code not verified, left empty.
    "midazolam_10_2": Medicine(
        "36124911000001107",
        "Midazolam 10mg/2ml solution for injection ampoules",
        "anticipatory",
        "",
        10,
        "ampoule",
    ),
    "haloperidol_5_1": Medicine(
        "36053511000001109",
        "Haloperidol 5mg/1ml solution for injection ampoules",
        "anticipatory",
        "0402010J0",
        10,
        "ampoule",
    ),
    "hyoscine_butylbromide_20_1": Medicine(
        "36044111000001101",
        "Hyoscine butylbromide 20mg/1ml solution for injection ampoules",
        "anticipatory",
        "0102000N0",
        10,
        "ampoule",
    ),
}
# UNVERIFIED, left out (no dm+d VMP id found in a trustworthy public source):
#   terbutaline_turbohaler (Terbutaline 500micrograms/dose dry powder inhaler), montelukast_10,
#   tiotropium_inhaler, losartan_50, indapamide_2_5, sertraline_50, levothyroxine_50 (and note: public
#   FHIR examples label 319773006 as ramipril, but it is Aspirin 75mg dispersible tablets in GP Connect
#   examples - never use it). Groups "ltra", "lama", "arb", "thiazide", "antidepressant" and "thyroid"
#   therefore have no product yet.


# ---------------------------------------------------------------------------------------------------
# 3. Vaccines (dm+d AMPs: the brand is what matters for a vaccine record)
# ---------------------------------------------------------------------------------------------------

# Names are the AMP names without the supplier, which is given in the comment. Ids with two sources are
# marked "x2"; the rest come from one source (NHS England immunisation API test data) - re-check
# against a dm+d release before relying on them outside synthetic data.
VACCINES: dict[str, Code] = {
    "infanrix_hexa": Code(  # GlaxoSmithKline UK Ltd; x2
        "34765811000001105",
        "Infanrix Hexa vaccine powder and suspension for suspension for injection 0.5ml pre-filled syringes",
    ),
    "vaxelis": Code(  # Sanofi
        "39367111000001105", "Vaxelis vaccine suspension for injection 0.5ml pre-filled syringes"
    ),
    "bexsero": Code(  # GlaxoSmithKline UK Ltd
        "23584211000001109", "Bexsero vaccine suspension for injection 0.5ml pre-filled syringes"
    ),
    "rotarix": Code("34609911000001106", "Rotarix vaccine live oral suspension 1.5ml tube"),  # GlaxoSmithKline UK Ltd
    "prevenar13": Code(  # Pfizer Ltd
        "16649411000001104", "Prevenar 13 vaccine suspension for injection 0.5ml pre-filled syringes"
    ),
    "priorix": Code(  # MMR; GlaxoSmithKline UK Ltd
        "34925111000001104",
        "Priorix vaccine powder and solvent for solution for injection 0.5ml pre-filled syringes",
    ),
    "mmrvaxpro": Code(  # Merck Sharp & Dohme (UK) Ltd
        "13968211000001108",
        "M-M-RVAXPRO vaccine powder and solvent for suspension for injection 0.5ml pre-filled syringes",
    ),
    "proquad": Code(  # MMRV (contains porcine gelatine); Merck Sharp & Dohme (UK) Ltd
        "45480711000001107",
        "ProQuad vaccine powder and solvent for suspension for injection 0.5ml pre-filled syringes",
    ),
    "priorix_tetra": Code(  # MMRV; GlaxoSmithKline UK Ltd
        "45525711000001102",
        "Priorix Tetra vaccine powder and solvent for solution for injection 0.5ml pre-filled syringes",
    ),
    "menitorix": Code(  # Hib/MenC; GlaxoSmithKline
        "9903711000001109", "Menitorix powder and solvent for solution for injection 0.5ml vials"
    ),
    "boostrix_ipv": Code(  # dTaP/IPV pre-school booster; GlaxoSmithKline UK Ltd; x2
        "26267211000001100", "Boostrix-IPV suspension for injection 0.5ml pre-filled syringes"
    ),
}
# UNVERIFIED, left out: repevax (no dm+d id found).


# ---------------------------------------------------------------------------------------------------
# 4. Immunisation procedures and not-given reasons (pathfinders.md section 3.4)
# ---------------------------------------------------------------------------------------------------

_SIX_IN_ONE = (
    "diphtheria, tetanus and acellular pertussis, inactivated polio, Haemophilus influenzae type b and "
    "hepatitis B vaccination"
)
_MENB = "dose of vaccine product containing only Neisseria meningitidis serogroup B antigen"
_MMR = "vaccine product containing only Measles morbillivirus and Mumps orthorubulavirus and Rubella virus antigens"
_MMRV = (
    "vaccine product containing only Human alphaherpesvirus 3 and Measles morbillivirus and Mumps "
    "orthorubulavirus and Rubella virus antigens"
)

IMMUNISATION_PROCEDURES: dict[str, Code] = {
    # UK concepts; no "fourth" 6-in-1 concept exists yet - number the 18-month dose by order.
    "dtap_ipv_hib_hepb_1": Code("1082441000000108", "First " + _SIX_IN_ONE),
    "dtap_ipv_hib_hepb_2": Code("1082451000000106", "Second " + _SIX_IN_ONE),
    "dtap_ipv_hib_hepb_3": Code("1082461000000109", "Third " + _SIX_IN_ONE),
    "dtap_ipv_hib_hepb": Code("1082431000000104", _SIX_IN_ONE[0].upper() + _SIX_IN_ONE[1:]),  # any dose
    "menb_1": Code("720539004", "Administration of first " + _MENB),
    "menb_2": Code("720540002", "Administration of second " + _MENB),
    "menb_booster": Code("720544006", "Administration of booster " + _MENB),
    "rota_1": Code("868631000000102", "First rotavirus vaccination"),
    "rota_2": Code("868651000000109", "Second rotavirus vaccination"),
    "pcv_1": Code("247631000000101", "First pneumococcal conjugated vaccination"),
    # display as summarised in pathfinders.md; FSN not re-read
    "pcv_booster": Code("394678003", "Booster dose of pneumococcal vaccine"),
    "hib_menc": Code(
        "428975001",
        "Administration of vaccine product containing only Haemophilus influenzae type b and "
        "Neisseria meningitidis serogroup C antigens",
    ),
    "mmr_1": Code("308081000000105", "Measles mumps and rubella vaccination - first dose"),
    "mmr_2": Code("170433008", "Administration of second dose of " + _MMR),
    "mmrv_1": Code("871909005", "Administration of first dose of " + _MMRV),
    "mmrv_2": Code("433733003", "Administration of second dose of " + _MMRV),
    "dtap_ipv_booster": Code(
        "247821000000102", "Booster diphtheria, tetanus, acellular pertussis and inactivated polio vaccination"
    ),
}

# Codes from the UK Core ReasonImmunizationNotAdministered expansion (pathfinders.md 3.4). Displays are
# the short labels used there, not re-read against the terminology server.
NOT_GIVEN: dict[str, Code] = {
    "dna_child_immunisation": Code("201741000000102", "Did not attend child immunisation"),
    "mmr_declined": Code("9711000175104", "Measles, mumps and rubella vaccination declined"),
    "six_in_one_declined": Code("1082521000000100", _SIX_IN_ONE[0].upper() + _SIX_IN_ONE[1:] + " declined"),
    "menb_declined": Code("720548009", "Meningococcal B vaccination declined"),
    "rota_declined": Code("868711000000104", "Rotavirus vaccination declined"),
    "pcv_declined": Code("401086001", "Pneumococcal vaccination declined"),
}


# ---------------------------------------------------------------------------------------------------
# 5. Pathology
# ---------------------------------------------------------------------------------------------------

TESTS: dict[str, Test] = {
    # Reference ranges are typical UK adult ranges; labs differ. Haemoglobin: 130-180 g/L is the adult male
    # range; 115-165 is used here as a single sex-neutral range.
    "haemoglobin": Test("1022431000000105", "Haemoglobin estimation", "g/L", 115.0, 165.0),
    "white_cell_count": Test("1022541000000102", "Total white cell count", "10*9/L", 4.0, 11.0),
    "platelets": Test("1022651000000100", "Platelet count", "10*9/L", 150.0, 400.0),
    "sodium": Test("1000661000000107", "Serum sodium level", "mmol/L", 133.0, 146.0),
    "potassium": Test("1000651000000109", "Serum potassium level", "mmol/L", 3.5, 5.3),
    "creatinine": Test("1000731000000107", "Serum creatinine level", "umol/L", 59.0, 104.0),
    "egfr": Test(
        "1011481000000105",
        "eGFR (estimated glomerular filtration rate) using creatinine Chronic Kidney Disease Epidemiology "
        "Collaboration equation per 1.73 square metres",
        "mL/min/{1.73_m2}",
        90.0,
        None,
    ),
    "hba1c": Test(
        "999791000000106",
        "Haemoglobin A1c level - International Federation of Clinical Chemistry and Laboratory Medicine standardised",
        "mmol/mol",
        20.0,
        41.0,
    ),
    "total_cholesterol": Test("1005671000000105", "Serum cholesterol level", "mmol/L", None, 5.0),
    "crp": Test("1001371000000100", "Serum CRP (C reactive protein) level", "mg/L", None, 5.0),
}

# Test request / panel codes (SNOMED procedures)
PANELS: dict[str, Code] = {
    "full_blood_count": Code("26604007", "Full blood count"),  # FSN "Complete blood count"; UK preferred term
    "urea_electrolytes": Code("252167001", "Measurement of urea and electrolytes"),
    "hba1c": Code("43396009", "Haemoglobin A1c measurement"),
    "lipids": Code("16254007", "Lipid panel"),
    "crp": Code("55235003", "C-reactive protein measurement"),
}


# ---------------------------------------------------------------------------------------------------
# 6. Blood pressure (pathfinders.md 4.2)
# ---------------------------------------------------------------------------------------------------

BLOOD_PRESSURE: dict[str, Code] = {
    "panel": Code("75367002", "Blood pressure"),
    # components of a clinic panel, as in the UK Core BloodPressure profile
    "systolic": Code("72313002", "Systolic arterial pressure"),
    "diastolic": Code("1091811000000102", "Diastolic arterial pressure"),
    # GP-style separate readings
    "oe_systolic": Code("163030003", "O/E - Systolic BP reading"),
    "oe_diastolic": Code("163031004", "O/E - Diastolic BP reading"),
    # home and ambulatory averages: compare with the HBPM/ABPM thresholds (5 mmHg lower)
    "home_systolic": Code("413606001", "Average home systolic blood pressure"),
    "home_diastolic": Code("413605002", "Average home diastolic blood pressure"),
    "abpm_systolic": Code("314446007", "Average day interval systolic blood pressure"),
    "abpm_diastolic": Code("314461008", "Average day interval diastolic blood pressure"),
}


# ---------------------------------------------------------------------------------------------------
# 7. Allergies
# ---------------------------------------------------------------------------------------------------

ALLERGENS: dict[str, Code] = {  # SNOMED substances
    "penicillin": Code("764146007", "Penicillin"),
    "amoxicillin": Code("372687004", "Amoxicillin"),
    "peanut": Code("762952008", "Peanut"),
    "latex": Code("111088007", "Latex"),
    "aspirin": Code("387458008", "Aspirin"),
    "ibuprofen": Code("387207008", "Ibuprofen"),
    "codeine": Code("387494007", "Codeine"),
    "shellfish": Code("735029006", "Shellfish"),
    "egg": Code("102263004", "Eggs (edible)"),
}

REACTIONS: dict[str, Code] = {
    "rash": Code("271807003", "Eruption of skin"),
    "urticaria": Code("126485001", "Urticaria"),
    "anaphylaxis": Code("39579001", "Anaphylaxis"),
    "angioedema": Code("41291007", "Angioedema"),
    "wheeze": Code("56018004", "Wheezing"),
    "nausea": Code("422587007", "Nausea"),
    "diarrhoea": Code("62315008", "Diarrhoea"),
}


# ---------------------------------------------------------------------------------------------------
# 8. Observations, reviews and flags
# ---------------------------------------------------------------------------------------------------

OBSERVATIONS: dict[str, Code] = {
    "news2": Code("1104051000000101", "Royal College of Physicians National Early Warning Score 2 - total score"),
    "heart_rate": Code("364075005", "Heart rate"),
    "respiratory_rate": Code("86290005", "Respiratory rate"),
    "oxygen_saturation": Code("431314004", "Peripheral oxygen saturation"),
    "body_temperature": Code("386725007", "Body temperature"),
    "bmi": Code("60621009", "Body mass index"),
    "smoking_never": Code("266919005", "Never smoked tobacco"),
    "smoking_current": Code("77176002", "Smoker"),
    "smoking_ex": Code("8517006", "Ex-smoker"),
    # In the QOF asthma-review code list (opensafely/asthma-annual-review-qof), with 270442000 below.
    "asthma_review": Code("394700004", "Asthma annual review"),
    "asthma_monitoring": Code("270442000", "Asthma monitoring check done"),
    "asthma_emergency_admission": Code("183478001", "Emergency hospital admission for asthma"),
    # CPR status codes advised by the SCR inclusion dataset / EoL Flag guidance. (304252001 "For
    # resuscitation" and 304253006 "Not for resuscitation" are older codes also seen in GP records.)
    "dnacpr": Code("450476008", "Not for attempted cardiopulmonary resuscitation"),
    "for_cpr": Code("450475007", "For attempted cardiopulmonary resuscitation"),
}
# UNVERIFIED, left out: asthma_action_plan (406162001 is "Asthma management", not an action plan),
#   hypertension_review, preferred place of death (EPaCCS) codes, end_of_life_care_register,
#   child_protection_flag, reasonable_adjustment flag concepts, carer.


# ---------------------------------------------------------------------------------------------------
# 9. Encounter types
# ---------------------------------------------------------------------------------------------------

ENCOUNTER_TYPES: dict[str, Code] = {
    "emergency_department_attendance": Code("4525004", "Emergency department patient visit"),
    "inpatient_admission": Code("32485007", "Hospital admission"),
    "emergency_admission": Code("183452005", "Emergency hospital admission"),
    "outpatient": Code("11429006", "Consultation"),
    "ambulance_attendance": Code("439811001", "Seen by ambulance crew"),
}
# UNVERIFIED, left out: nhs111_call (no encounter-type concept verified; 907301000000109 "National Health
#   Service 111 service" is a qualifier value), mental_health_crisis_contact, social_care_assessment.
