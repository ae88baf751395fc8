"""The ingestion commands: `sharedcare sources ...`, `sharedcare inbox ...`, `sharedcare mllp`,
`sharedcare ingest` and `sharedcare watch` (registered on the app in cli.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy import Engine

from sharedcare.errors import ConfigurationError
from sharedcare.settings import get_settings
from sharedcare.storage import inbox_store

console = Console(stderr=True)
sources_app = typer.Typer(help="The source registry: who may send data, and how they prove it.", no_args_is_help=True)
inbox_app = typer.Typer(help="The inbox: inbound messages, dead letters and replays.", no_args_is_help=True)
conceptmap_app = typer.Typer(help="A source's ConceptMaps: its local codes translated to standard ones.",
                             no_args_is_help=True)


def _fail(text: str, code: int = 2) -> typer.Exit:
    console.print(text, style="red", markup=False, soft_wrap=True)
    return typer.Exit(code)


@contextlib.contextmanager
def _engine() -> Iterator[Engine]:
    from sharedcare.storage import database

    engine = database.make_engine(get_settings().database_url)
    try:
        database.upgrade(engine)
        yield engine
    finally:
        engine.dispose()


def _source_json(s: inbox_store.Source) -> dict[str, Any]:
    return {"source_id": s.source_id, "ods": s.ods, "system": s.system, "name": s.name, "feeds": list(s.feeds),
            "expected_minutes": s.expected_minutes, "cert_sha256": s.cert_sha256, "client_id": s.client_id,
            "code_systems": list(s.code_systems), "status": s.status, "created": s.created,
            "last_received": s.last_received}


@sources_app.command("add")
def sources_add(
    source_id: Annotated[str, typer.Argument(help="A short id for the source, e.g. RJ7-PAS.")],
    ods: Annotated[str, typer.Option(help="The organisation's ODS code (HL7 MSH-4), e.g. RJ7.")],
    name: Annotated[str, typer.Option(help="What the source is, e.g. \"St George's PAS\".")],
    feeds: Annotated[str, typer.Option(help="Comma-separated: hl7v2, fhir, csv.")] = "hl7v2",
    system: Annotated[str | None, typer.Option(
        help="The sending application (HL7 MSH-3); unset: any of the organisation's systems.")] = None,
    expected_minutes: Annotated[int | None, typer.Option(
        help="Raise an alert when nothing arrives for longer than this.")] = None,
    cert: Annotated[Path | None, typer.Option(
        help="The source's TLS client certificate (PEM or DER): bound to it.")] = None,
    cert_sha256: Annotated[str | None, typer.Option(help="Or the certificate's SHA-256 fingerprint.")] = None,
    client_id: Annotated[str | None, typer.Option(help="The SMART system client its FHIR pushes use.")] = None,
    code_system: Annotated[list[str] | None, typer.Option(help="A local code system it uses (repeatable).")] = None,
    csv_mapping: Annotated[str | None, typer.Option(
        help="Its CSV extracts' column mapping: a YAML file, or a shipped one (social-care, nhs-111).")] = None,
) -> None:
    """Register a source."""
    from sharedcare.ingest import sources

    try:
        fingerprint = sources.fingerprint(cert_sha256) if cert_sha256 else (_cert_fingerprint(cert) if cert else None)
        mapping_text = _csv_mapping(csv_mapping) if csv_mapping else None
        source = inbox_store.Source(
            source_id, ods.upper(), name, tuple(f.strip() for f in feeds.split(",") if f.strip()), system=system,
            expected_minutes=expected_minutes, cert_sha256=fingerprint, client_id=client_id,
            code_systems=tuple(code_system or ()), csv_mapping=mapping_text)
        with _engine() as engine:
            sources.register(engine, source)
    except sources.InvalidSource as exc:
        raise _fail(str(exc)) from None
    except inbox_store.SourceExists:
        raise _fail("a source with that id is registered already; nothing was changed") from None
    console.print(f"registered source {source_id}")


def _csv_mapping(value: str) -> str:
    """A shipped mapping's name as it is, or a YAML file's text, checked now so a bad mapping is
    refused at registration rather than at the first extract."""
    from sharedcare.ingest.csv import mapping as csv_mapping

    path = Path(value)
    try:
        if path.suffix.lower() in (".yaml", ".yml") or path.exists():
            text = path.read_text(encoding="utf-8")
            csv_mapping.load(text)
            return text
        csv_mapping.packaged(value)
    except OSError:
        raise _fail(f"the mapping file {value!r} cannot be read") from None
    except ValueError as exc:
        raise _fail(f"the CSV mapping is not valid: {exc}") from None
    return value


def _cert_fingerprint(path: Path) -> str:
    import ssl

    try:
        raw = path.read_bytes()
    except OSError:
        raise _fail(f"the certificate file {str(path)!r} cannot be read") from None
    try:
        der = ssl.PEM_cert_to_DER_cert(raw.decode("ascii")) if b"-----BEGIN" in raw else raw
    except (ValueError, UnicodeDecodeError):
        raise _fail("the certificate file is not a PEM or DER certificate") from None
    return hashlib.sha256(der).hexdigest()


@sources_app.command("list")
def sources_list(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the registered sources (those registered on first contact show status review)."""
    with _engine() as engine:
        rows = inbox_store.sources(engine)
    if as_json:
        typer.echo(json.dumps([_source_json(s) for s in rows]))
        return
    for s in rows:
        typer.echo(f"{s.source_id}  {s.ods}  {s.system or '*'}  {' '.join(s.feeds)}  {s.status}  "
                   f"last received {s.last_received or 'never'}  {s.name}")


def _set_status(source_id: str, status: str) -> None:
    with _engine() as engine:
        found = inbox_store.change_source(engine, source_id, status=status)
    if not found:
        raise _fail("no source has that id; nothing was changed", 1)
    console.print(f"source {source_id} is {status}")


@sources_app.command("disable")
def sources_disable(source_id: Annotated[str, typer.Argument(help="The source to disable.")]) -> None:
    """Disable a source: its messages are refused (AR) from now on; what it sent stays."""
    _set_status(source_id, "disabled")


@sources_app.command("enable")
def sources_enable(source_id: Annotated[str, typer.Argument(help="The source to enable.")]) -> None:
    """Enable a source, or approve one registered on first contact (status review)."""
    _set_status(source_id, "active")


@conceptmap_app.command("add")
def conceptmap_add(
    source_id: Annotated[str, typer.Argument(help="The source whose local codes the map translates.")],
    file: Annotated[Path, typer.Argument(help="A FHIR R4 ConceptMap (JSON) with a url.")],
) -> None:
    """Keep a ConceptMap for a source: checked against R4, its useContext naming the source, the source's
    local code systems extended by its group sources. A file with the url of a map the source has
    replaces it (a new version); the next message processed uses it."""
    from sharedcare.app import open_services
    from sharedcare.errors import FhirError
    from sharedcare.fhir import jsonio
    from sharedcare.ingest import concept_maps

    try:
        doc = jsonio.loads(file.read_bytes())
    except OSError:
        raise _fail(f"the file {str(file)!r} cannot be read") from None
    except (ValueError, FhirError):
        raise _fail("the file is not JSON") from None
    svc = open_services(get_settings())
    try:
        source = inbox_store.get_source(svc.engine, source_id)
        if source is None:
            raise _fail("no source has that id; nothing was changed", 1)
        added = concept_maps.add(svc.repo, source, doc)
    except concept_maps.InvalidConceptMap as exc:
        raise _fail(f"{exc}; nothing was changed") from None
    except FhirError as exc:
        raise _fail("the ConceptMap was not stored: " + "; ".join(i.diagnostics for i in exc.issues)) from None
    finally:
        svc.committer.close()
        svc.engine.dispose()
    stored = added.stored
    console.print(f"ConceptMap/{stored.res_id} version {stored.version_id} "
                  f"{'stored' if added.created else 'replaced'} for source {source_id}")
    for system in added.new_systems:
        console.print(f"added the local code system {system} to source {source_id}", markup=False)
    if doc.get("status") != "active":
        console.print("the map is not active: it is kept but not applied until a version with status active is added")


@conceptmap_app.command("list")
def conceptmap_list(
    source_id: Annotated[str, typer.Argument(help="The source whose ConceptMaps to list.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the ConceptMaps that name a source, and whether each is applied to its messages."""
    import dataclasses

    from sharedcare.app import open_services
    from sharedcare.ingest import concept_maps

    svc = open_services(get_settings())
    try:
        source = inbox_store.get_source(svc.engine, source_id)
        if source is None:
            raise _fail("no source has that id", 1)
        rows = concept_maps.listed(svc.repo, source)
    finally:
        svc.committer.close()
        svc.engine.dispose()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in rows]))
        return
    if not rows:
        console.print(f"source {source_id} has no ConceptMaps")
    for r in rows:
        groups = ", ".join(f"{src} -> {tgt} ({n} codes)" for src, tgt, n in r.groups)
        typer.echo(f"ConceptMap/{r.res_id}  version {r.version_id}  {r.url}{'|' + r.version if r.version else ''}  "
                   f"{r.status}  {'applied' if r.applied else 'not applied'}  "
                   f"written by {r.written_by or 'the node'}  {groups}")


def _message_json(m: inbox_store.Message, *, payload: bool = False) -> dict[str, Any]:
    out = {"seq": m.seq, "source_id": m.source_id, "message_key": m.message_key, "kind": m.kind,
           "received": m.received, "status": m.status, "attempts": m.attempts, "next_attempt": m.next_attempt,
           "error": m.error, "processed": m.processed, "outcome": json.loads(m.outcome) if m.outcome else None}
    if payload:
        out["payload"] = m.payload.decode("utf-8", "replace")
    return out


@inbox_app.command("list")
def inbox_list(
    status: Annotated[str | None, typer.Option(help="pending, done or dead.")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source's messages.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List inbound messages (never their contents), with counts by status."""
    if status is not None and status not in (inbox_store.PENDING, inbox_store.DONE, inbox_store.DEAD):
        raise _fail("a status is pending, done or dead")
    with _engine() as engine:
        rows = inbox_store.messages(engine, status=status, source_id=source, limit=limit, payload=False)
        counts = inbox_store.counts(engine)
    if as_json:
        typer.echo(json.dumps({"counts": counts, "messages": [_message_json(m) for m in rows]}))
        return
    console.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "the inbox is empty")
    for m in rows:
        typer.echo(f"{m.seq}  {m.source_id}  {m.message_key}  {m.kind}  {m.status}  attempts {m.attempts}  "
                   f"{m.received}{'  ' + m.error if m.error else ''}")


@inbox_app.command("show")
def inbox_show(
    seq: Annotated[int, typer.Argument(help="The message's number (from `inbox list`).")],
    payload: Annotated[bool, typer.Option(
        help="Also print the message itself (record content: for fixing it).")] = False,
) -> None:
    """Show one message: its status, attempts, the reason it failed, what it wrote."""
    with _engine() as engine:
        m = inbox_store.message(engine, seq)
    if m is None:
        raise _fail("no message has that number", 1)
    typer.echo(json.dumps(_message_json(m, payload=payload), indent=1))


@inbox_app.command("work")
def inbox_work() -> None:
    """Process the inbox until stopped (Ctrl-C): the worker alone, beside listeners run with --no-worker,
    or as more workers (each message is processed once, whichever worker claims it)."""
    from sharedcare import log_config
    from sharedcare.app import open_services
    from sharedcare.ingest.inbox import Inbox

    settings = get_settings()
    log_config.configure(settings.log_level)
    svc = open_services(settings)

    async def work(stop: asyncio.Event) -> None:
        console.print("inbox worker running")
        await Inbox(svc.repo, settings).run(stop)
    _until_stopped(svc, work)


def _until_stopped(svc: Any, work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `work(stop)` until SIGINT or SIGTERM sets `stop`; then close the store."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await work(stop)

    try:
        asyncio.run(main())
    finally:
        svc.committer.close()
        svc.engine.dispose()


@inbox_app.command("replay")
def inbox_replay(
    seq: Annotated[list[int] | None, typer.Argument(help="Dead letters to process again.")] = None,
    source: Annotated[str | None, typer.Option(help="Every dead letter of this source.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead letter.")] = False,
) -> None:
    """Put dead letters back in the inbox, to be processed again (after a fix). Replaying is
    idempotent: a message already done is never processed twice."""
    if not seq and source is None and not all_dead:
        raise _fail("name the messages, a --source, or --all-dead")
    with _engine() as engine:
        n = inbox_store.replay(engine, list(seq) if seq else None, source_id=source)
    console.print(f"{n} dead letter{'s' if n != 1 else ''} put back to be processed")


def mllp(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default SHAREDCARE_MLLP_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SHAREDCARE_MLLP_PORT, else 2575).")] = None,
    worker: Annotated[bool, typer.Option(
        help="Also process the inbox here; --no-worker leaves it to `sharedcare inbox work` elsewhere.")] = True,
) -> None:
    """Run the HL7 v2 MLLP listener and the inbox worker (ACK after a durable commit)."""
    from sharedcare import log_config
    from sharedcare.app import open_services
    from sharedcare.ingest import runner
    from sharedcare.ingest.inbox import Inbox

    settings = get_settings()
    log_config.configure(settings.log_level)
    where = host or settings.mllp_host
    listen_port = port or settings.mllp_port or 2575
    try:
        runner.tls_for(settings, where)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    svc = open_services(settings)

    async def listen(stop: asyncio.Event) -> None:
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(runner.run(Inbox(svc.repo, settings), settings, where, listen_port, stop, started,
                                              worker=worker))
        console.print(f"MLLP listener on {where}:{await started}")
        await task
    _until_stopped(svc, listen)


def ingest(
    files: Annotated[list[Path], typer.Argument(
        help="HL7 v2 files (.hl7: a message or a batch file), FHIR (.json, .ndjson) or CSV extracts (.csv).")],
    source: Annotated[str | None, typer.Option(help="The source that sent the FHIR or CSV files.")] = None,
    process: Annotated[bool, typer.Option(help="Process the inbox once the files are in it.")] = True,
) -> None:
    """Put files into the inbox as their sources sent them, then process them.

    HL7 v2 messages name their source (MSH-4); FHIR and CSV files are from --source. A message
    already received is not stored again."""
    from sharedcare.app import open_services
    from sharedcare.ingest.files import ingest_files
    from sharedcare.ingest.inbox import Inbox

    settings = get_settings()
    svc = open_services(settings)
    try:
        report = ingest_files(Inbox(svc.repo, settings), files, process=process, source_id=source)
    finally:
        svc.committer.close()
        svc.engine.dispose()
    for line in report.problems:
        console.print(line, style="red", markup=False, soft_wrap=True)
    console.print(f"{report.stored} messages stored ({report.duplicates} already received, {report.refused} refused)"
                  + (f"; processed: {report.done} done, {report.dead} dead letters, {report.pending} waiting"
                     if process else ""))
    if report.refused or report.dead or report.unreadable:
        raise typer.Exit(1)


def watch(
    once: Annotated[bool, typer.Option(
        "--once", help="Scan once, process the inbox, print a summary and exit (1 if a file failed).")] = False,
    folder: Annotated[Path | None, typer.Option(
        "--dir", help="The drop folder: <dir>/<source-id>/ (default SHAREDCARE_DROP_DIR).")] = None,
) -> None:
    """Watch the drop folder for file feeds: each complete file in a source's folder goes into the inbox
    as that source sent it, then to done/ or failed/ (with its reasons)."""
    from sharedcare import log_config
    from sharedcare.app import open_services
    from sharedcare.ingest import dropfolder
    from sharedcare.ingest.inbox import Inbox

    settings = get_settings()
    log_config.configure(settings.log_level)
    root = folder or settings.drop_dir
    if root is None:
        raise _fail("name the drop folder: --dir, or SHAREDCARE_DROP_DIR")
    if not root.is_dir():
        raise _fail(f"the drop folder {str(root)!r} is not a folder")
    svc = open_services(settings)
    box = Inbox(svc.repo, settings)
    if not once:
        console.print(f"watching {root} (Ctrl-C stops)", markup=False)
        _until_stopped(svc, lambda stop: dropfolder.run(box, root, stop, poll_s=settings.drop_poll_seconds,
                                                        worker=True))
        return
    try:
        scan = dropfolder.once(box, root, settings.drop_poll_seconds)
        processed = box.drain()
        pending = inbox_store.counts(svc.engine).get(inbox_store.PENDING, 0)
    finally:
        svc.committer.close()
        svc.engine.dispose()
    report = scan.report
    console.print(
        f"{scan.taken} files taken ({scan.done} done, {scan.failed} failed), {scan.waiting} still changing, "
        f"{scan.left} left to try again, {scan.folders_left_alone} folders left alone; {report.stored} messages "
        f"stored ({report.duplicates} already received, {report.refused} refused); processed: "
        f"{sum(o.status == inbox_store.DONE for o in processed)} done, "
        f"{sum(o.status == inbox_store.DEAD for o in processed)} dead letters, {pending} waiting",
        markup=False, soft_wrap=True)
    if scan.failed:
        raise typer.Exit(1)
