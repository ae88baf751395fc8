"""`sharedcare demo`: a synthetic London loaded into a fresh embedded store, with demo logins.

The FHIR feeds (GP practices, ambulance, hospitals' documents, cancer pathways and free slots) go
straight into the store through the Repository, each as its sending organisation (the quickest way to
a first load of this size); the hospital and mental health trusts' HL7 v2 feeds and the 111 and social
care CSV extracts go through the inbox, as their sources would send them (ingest/). The logins
are local accounts in the demo's database (argon2 hashes); they sign in once the sign-in pages of
the access issue exist.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from itertools import islice
from pathlib import Path
from typing import Any

from rich.progress import Progress

from sharedcare.synth import DEFAULT_AS_OF, DEFAULT_SEED, TYPES, generate

BATCH = 200  # feed lines (a patient's bundle, an incident, a directory resource) per transaction
STAFF_KINDS = ("gp", "ed-doctor", "consultant", "paramedic", "111-clinician", "psychiatrist", "district-nurse",
               "social-worker", "care-home-manager", "practice-nurse")
PATIENT_LOGINS = 5
LOGIN_KEYS = ("username", "password", "kind", "role", "organisation")  # what logins.json holds


def password(seed: int, username: str) -> str:
    """A demo password, the same for every run of the same seed (these accounts guard synthetic data only)."""
    return hashlib.sha256(f"sharedcare-demo:{seed}:{username}".encode()).hexdigest()[:16]


def prepare(root: Path, people: int, progress: Progress, seed: int = DEFAULT_SEED) -> tuple[str, list[dict[str, Any]]]:
    """Generate, load into `root`/sharedcare.db (made afresh) and write `root`/logins.json; returns the
    database URL and the logins."""
    from sharedcare.access.context import system_caller
    from sharedcare.app import open_services, warm_up
    from sharedcare.fhir import interactions, jsonio
    from sharedcare.settings import Settings

    out = root / "synth"
    if out.exists():
        shutil.rmtree(out)
    task = progress.add_task("generating", total=None)
    generate(people, seed, DEFAULT_AS_OF, out)
    progress.update(task, total=1, completed=1)
    db = root / "sharedcare.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db.resolve()}"
    settings = Settings(database_url=url)
    svc = open_services(settings, migrate=True)
    warm_up(settings)
    files = [out / "directory" / f"{t}.ndjson" for t in TYPES] + sorted((out / "feeds").glob("*/*.ndjson"))
    # progress in bytes: the sizes are known without reading the files a second time
    task = progress.add_task("loading", total=sum(path.stat().st_size for path in files))
    try:
        for path in files:
            # Each feed is written as its sending organisation (feeds/<kind>/<ODS>.ndjson), as ingestion
            # will; the directory as the node itself.
            org = None if path.parent.name == "directory" else path.stem
            caller = system_caller(settings.node_id, organisation=org)
            with path.open("rb") as f:
                while lines := list(islice(f, BATCH)):
                    with svc.repo.unit(caller, "transaction") as unit:
                        for line in lines:
                            for res in _to_store(jsonio.loads(line)):
                                interactions.update(unit, res["resourceType"], res["id"], res, if_match=None)
                    progress.advance(task, sum(len(line) for line in lines))
        _ingest_feeds(svc, settings, out, progress)
    finally:
        svc.committer.close()
        svc.engine.dispose()
    full = _logins(out, seed)
    _accounts(url, full)
    logins = [{key: login[key] for key in LOGIN_KEYS} for login in full]
    logins.append(_api_client(settings))
    (root / "logins.json").write_text(json.dumps(logins, indent=2) + "\n", encoding="utf-8")
    return url, logins


NHS_111 = "Y111L"  # the synthetic London's NHS 111 provider (synth/providers.py)


def _ingest_feeds(svc: Any, settings: Any, out: Path, progress: Progress) -> None:
    """The hospital and mental health trusts' HL7 v2 feeds and the 111 and social care CSV extracts,
    through the inbox as any source's (docs/ingest.md): each sender registered as a source first."""
    from sharedcare.ingest import sources
    from sharedcare.ingest.files import ingest_files
    from sharedcare.ingest.inbox import Inbox
    from sharedcare.storage.inbox_store import Source

    feeds = out / "feeds"
    hl7 = sorted(feeds.glob("hospital/*.hl7")) + sorted(feeds.glob("mental-health/*.hl7"))
    councils = sorted(feeds.glob("social-care/*.csv"))
    for path in hl7:
        sources.register(svc.engine, Source(path.stem, path.stem, f"{path.stem} patient administration", ("hl7v2",)))
    for path in councils:
        sources.register(svc.engine, Source(path.stem, path.stem, f"{path.stem} social care", ("csv",),
                                            csv_mapping="social-care"))
    sources.register(svc.engine, Source(NHS_111, NHS_111, "NHS 111 London", ("csv",), csv_mapping="nhs-111"))
    inbox = Inbox(svc.repo, settings)
    batches = [(path, None) for path in hl7] + [(path, path.stem) for path in councils] + \
        [(path, NHS_111) for path in sorted(feeds.glob("111/*.csv"))]
    task = progress.add_task("ingesting feeds", total=len(batches))
    for path, source_id in batches:
        ingest_files(inbox, [path], source_id=source_id)
        progress.advance(task)


def _api_client(settings: Any) -> dict[str, Any]:
    """A read-only backend client of the demo node, to try the FHIR API with client credentials."""
    from sharedcare.access.oauth import endpoints, register_client
    from sharedcare.storage import database
    from sharedcare.storage.oauth import OAuthStore

    engine = database.make_engine(settings.database_url)
    try:
        client, secret = register_client(OAuthStore(engine), "demo API explorer", scope="system/*.rs")
    finally:
        engine.dispose()
    return {"username": client.client_id, "password": secret, "kind": "client", "role": "system/*.rs",
            "organisation": None, "token_endpoint": endpoints(settings).token}


def _accounts(url: str, logins: list[dict[str, Any]]) -> None:
    """The logins as local accounts (argon2 hashes in the demo's database): staff with their SDS job
    role at their organisation, patients with their NHS number."""
    from sharedcare.access import accounts
    from sharedcare.access.roles import LOCAL_JOB_ROLES
    from sharedcare.storage import database
    from sharedcare.storage.accounts import AccountStore

    engine = database.make_engine(url)
    try:
        store = AccountStore(engine)
        for login in logins:
            if login["kind"] == "staff":
                accounts.add(store, login["username"], "staff", login["password"],
                             roles=((login["organisation_code"], LOCAL_JOB_ROLES[login["role"]]),))
            else:
                accounts.add(store, login["username"], "patient", login["password"], nhs_number=login["nhs_number"])
    finally:
        engine.dispose()


def _to_store(item: dict[str, Any]) -> list[dict[str, Any]]:
    """What one line of a feed puts in the store: a directory resource as it is, a transaction's
    resources one by one, a document (a discharge summary) whole, as a Bundle."""
    if item["resourceType"] != "Bundle" or item.get("type") == "document":
        return [item]
    return [entry["resource"] for entry in item.get("entry", [])]


def _logins(out: Path, seed: int) -> list[dict[str, Any]]:
    orgs = {}
    with (out / "directory" / "Organization.ndjson").open(encoding="utf-8") as f:
        for line in f:
            org = json.loads(line)
            orgs[org["identifier"][0]["value"]] = org["name"]
    logins: list[dict[str, Any]] = []
    with (out / "directory" / "staff.csv").open(encoding="utf-8") as f:
        staff = list(csv.DictReader(f))
    for role in STAFF_KINDS:  # one member of staff of each kind
        row = next((r for r in staff if r["job_role"] == role), None)
        if row is not None:
            logins.append({"username": row["username"], "password": password(seed, row["username"]), "kind": "staff",
                           "role": role, "organisation": orgs[row["organisation_code"]],
                           "organisation_code": row["organisation_code"]})
    with (out / "truth" / "people.csv").open(encoding="utf-8") as f:
        for row in islice((r for r in csv.DictReader(f) if not r["died_on"]), PATIENT_LOGINS):
            username = f"patient-{row['nhs_number']}"
            logins.append({"username": username, "password": password(seed, username), "kind": "patient",
                           "role": "patient", "organisation": orgs[row["practice"]],
                           "organisation_code": row["practice"], "nhs_number": row["nhs_number"]})
    return logins
