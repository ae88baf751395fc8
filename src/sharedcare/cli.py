"""The `sharedcare` command line. Configuration comes only from SHAREDCARE_* variables or flags."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sharedcare.errors import ConfigurationError, SharedcareError
from sharedcare.settings import get_settings

app = typer.Typer(help="sharedcare: joined-up health and care records over one FHIR R4 store.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
users_app = typer.Typer(help="Local sign-in accounts (the embedded default and the demo).", no_args_is_help=True)
app.add_typer(users_app, name="users")
clients_app = typer.Typer(help="SMART on FHIR clients: backend systems and apps.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")
mpi_app = typer.Typer(help="The master patient index: match weights and how well they link.", no_args_is_help=True)
app.add_typer(mpi_app, name="mpi")
console = Console(stderr=True)


def _ingestion_commands() -> None:
    from sharedcare.ingest import commands

    commands.sources_app.add_typer(commands.conceptmap_app, name="conceptmap")
    app.add_typer(commands.sources_app, name="sources")
    app.add_typer(commands.inbox_app, name="inbox")
    app.command()(commands.mllp)
    app.command()(commands.ingest)
    app.command()(commands.watch)


_ingestion_commands()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only; SQLite uses one).")] = 1,
) -> None:
    """Serve the FHIR API and web app (creates or migrates the embedded database by itself)."""
    import uvicorn

    from sharedcare import log_config
    from sharedcare.app import create_app

    # Links should name the address actually served, unless the operator set the public URL.
    os.environ.setdefault("SHAREDCARE_BASE_URL", f"http://{host}:{port}/fhir")
    get_settings.cache_clear()
    settings = get_settings()
    log_config.configure(settings.log_level)
    console.print(f"sharedcare on http://{host}:{port} (FHIR base {settings.base_url})")
    if workers > 1:
        uvicorn.run("sharedcare.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=False)
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision (Alembic)."""
    from sharedcare.storage import database

    engine = database.make_engine(get_settings().database_url)
    try:
        database.upgrade(engine)
    finally:
        engine.dispose()
    console.print("database schema is current")


@db_app.command("relabel")
def db_relabel() -> None:
    """Recompute security labels, relationships and restrictions of everything stored (after changing
    the sensitive code sets, or for a store written before they existed)."""
    from sharedcare.access import labels
    from sharedcare.errors import ConfigurationError
    from sharedcare.storage import database
    from sharedcare.storage.relabel import relabel

    settings = get_settings()
    try:
        code_sets = labels.load_code_sets(settings.sensitive_codes_file)
    except ConfigurationError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    engine = database.make_engine(settings.database_url)
    try:
        if not database.is_current(engine):
            console.print("[red]the database schema is not current: run `sharedcare db upgrade` first[/red]")
            raise typer.Exit(1)
        done = relabel(engine, code_sets)
    finally:
        engine.dispose()
    console.print(f"relabelled {done:,} resources")


@app.command()
def load(
    files: Annotated[list[Path], typer.Argument(help="Transaction/batch bundles (.json) or NDJSON files.")],
    source: Annotated[str | None, typer.Option(
        help="The registered source the files come from (by default the node itself, with no source "
             "organisation).")] = None,
    defer_linking: Annotated[bool, typer.Option(
        help="Do not link Patients in the patient index as they load (a bulk first load); they are not found by "
             "$match or Person until `sharedcare mpi rebuild` links them, which this runs at the end.")] = False,
) -> None:
    """Load FHIR data through the inbox, as a feed's messages are: each bundle as one transaction, each
    NDJSON file as a bulk load (created, or updated when a line has an id). A file already loaded is not
    loaded again; what cannot be written is kept as a dead letter (`sharedcare inbox list`)."""
    from sharedcare.app import open_services, warm_up
    from sharedcare.ingest.inbox import Inbox
    from sharedcare.ingest.load import Loaded, load_files
    from sharedcare.storage import inbox_store

    settings = get_settings()
    svc = open_services(settings)
    svc.repo.link_patients = not defer_linking
    warm_up(settings)
    results: list[Loaded] = []
    try:
        chosen = inbox_store.get_source(svc.engine, source) if source is not None else None
        if source is not None and (chosen is None or not chosen.active or "fhir" not in chosen.feeds):
            console.print("[red]no active source with that id is registered to send FHIR[/red]")
            raise typer.Exit(2)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("loading", total=len(files))

            def done(result: Loaded) -> None:
                for why in result.failures:
                    console.print(f"{result.name}: {why}", style="red", markup=False, soft_wrap=True)
                progress.advance(task)
            results = load_files(Inbox(svc.repo, settings), files, chosen, done)
        if defer_linking:
            from sharedcare.storage import mpi_store

            linked = mpi_store.rebuild(svc.engine, node=settings.node_id)
            console.print(f"linked {linked} Patients in the patient index")
    finally:
        svc.committer.close()
        svc.engine.dispose()
    failed = sum(bool(r.failures) for r in results)
    already = sum(r.already for r in results)
    console.print(f"loaded {sum(r.written for r in results)} resources from {len(files) - failed} of {len(files)} "
                  f"files" + (f" ({already} parts loaded before, not again)" if already else ""))
    if failed:
        raise typer.Exit(1)


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Directory to write to (created if need be).")],
    people: Annotated[int, typer.Option(help="People in the synthetic population.", min=1)] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed and as-of date give the same bytes.")] = 1,
    as_of: Annotated[str, typer.Option("--as-of", help="The date the data describes (YYYY-MM-DD).")] = "2026-04-01",
) -> None:
    """Generate synthetic London: the directory, people, every source's feeds and the truth files."""
    from datetime import date

    from sharedcare import synth as generator

    try:
        when = date.fromisoformat(as_of)
    except ValueError:
        console.print(f"[red]--as-of must be a date as YYYY-MM-DD, not {as_of!r}[/red]")
        raise typer.Exit(2) from None
    if out.exists() and not out.is_dir():
        console.print(f"[red]--out must be a directory; {out} is a file[/red]")
        raise typer.Exit(2)
    try:
        counts = generator.generate(people, seed, when, out)
    except OSError as exc:  # a folder that cannot be written, a full disk: say so, without a traceback
        console.print(f"[red]could not write synthetic London to {out}: {exc.strerror or exc}[/red]")
        raise typer.Exit(1) from None
    console.print(", ".join(f"{n:,} {what}" for what, n in counts.items()) + f" written to {out}")


@app.command()
def demo(
    people: Annotated[int, typer.Option(help="People in the synthetic population.", min=1)] = 2000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo keeps its data.")] = Path("var/demo"),
    serve_app: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the app when loaded.")] = True,
) -> None:
    """Generate a synthetic London, load it into a fresh embedded store, write the demo logins and serve."""
    from sharedcare import demo as demo_setup

    base = f"http://{host}:{port}"
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        try:
            url, logins = demo_setup.prepare(directory, people, progress)
        except OSError as exc:  # a --dir that cannot be written, a full disk
            console.print(f"[red]could not prepare the demo in {directory}: {exc.strerror or exc}[/red]")
            raise typer.Exit(1) from None
    console.print(f"demo data: {people:,} people in {url}")
    people_logins = [login for login in logins if login["kind"] != "client"]
    console.print(f"logins ({len(people_logins)}) written to {directory / 'logins.json'}; sign in at "
                  f"{base}/auth/login. Some of them:")
    for login in people_logins[:6]:
        console.print(f"  {login['kind']:8} {login['role']:22} {login['username']}  {login['password']}")
    for login in logins:
        if login["kind"] == "client":
            console.print(f"API client (client credentials, {login['role']}): {login['username']}  "
                          f"{login['password']}  token endpoint {login['token_endpoint']}")
    if not serve_app:
        return
    os.environ["SHAREDCARE_DATABASE_URL"] = url
    people_csv = (directory / "synth" / "truth" / "people.csv").resolve()
    os.environ.setdefault("SHAREDCARE_PDS_SANDBOX_PEOPLE", str(people_csv))
    os.environ.setdefault("SHAREDCARE_PDS_URL", f"{base}/pds/FHIR/R4")
    console.print(f"demo only: a PDS sandbox of the synthetic people at {base}/pds/FHIR/R4 "
                  "(`sharedcare mpi trace` checks the index against it)")
    # The demo's accounts sign in with passwords (AAL1) and it has no smartcards, so unless the operator
    # says otherwise its clinicians may break the glass and edit care plans without stepping up.
    if "SHAREDCARE_STEP_UP_AAL" not in os.environ:
        os.environ["SHAREDCARE_STEP_UP_AAL"] = "1"
        console.print("demo only: no step-up to AAL3 for break-glass or care plan changes (SHAREDCARE_STEP_UP_AAL=1)")
    console.print(f"open {base}/ (FHIR API at {base}/fhir)")
    serve(host=host, port=port, workers=1)


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Lower-case letters, digits, '.', '_', '@' or '-'.")],
    role: Annotated[list[str] | None, typer.Option(
        help="A staff role profile ODS:JOBROLE, e.g. RRU:R8003 (repeatable).")] = None,
    nhs_number: Annotated[str | None, typer.Option(help="For a patient account: their NHS number.")] = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
) -> None:
    """Add a staff account (with --role) or a patient account (with --nhs-number). Without
    --password-stdin a password is made up and printed once."""
    import sys

    from sharedcare.access import accounts
    from sharedcare.storage import database
    from sharedcare.storage.accounts import AccountStore

    roles = _parse_roles(role or [])
    password = sys.stdin.readline().rstrip("\n") if password_stdin else accounts.new_password()
    engine = database.make_engine(get_settings().database_url)
    try:
        database.upgrade(engine)
        made = accounts.add(AccountStore(engine), username, "patient" if nhs_number else "staff", password,
                            nhs_number=nhs_number, roles=tuple(roles))
    except accounts.AccountExists:
        console.print(f"[red]an account called {username!r} already exists; nothing was changed[/red]")
        raise typer.Exit(1) from None
    except accounts.AccountError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    result = {"username": made.username, "kind": made.kind}
    if not password_stdin:
        result["password"] = password
    typer.echo(json.dumps(result))


@users_app.command("list")
def users_list() -> None:
    """List the usernames of the local accounts."""
    from sharedcare.storage import database
    from sharedcare.storage.accounts import AccountStore

    engine = database.make_engine(get_settings().database_url)
    try:
        database.upgrade(engine)
        for name in AccountStore(engine).usernames():
            typer.echo(name)
    finally:
        engine.dispose()


def _parse_roles(items: list[str]) -> list[tuple[str, str]]:
    """--role values ODS:JOBROLE as (organisation, job role); exits 2 on a malformed one."""
    roles = []
    for item in items:
        org, _, code = item.partition(":")
        if not org or not code:
            console.print(f"[red]--role takes ODS:JOBROLE (e.g. RRU:R8003), not {item!r}[/red]")
            raise typer.Exit(2)
        roles.append((org, code))
    return roles


def _account_change(change: Any) -> None:
    """Run `change(account_store, oauth_store)` on the configured database, reporting a refusal."""
    from sharedcare.access import accounts
    from sharedcare.storage import database
    from sharedcare.storage.accounts import AccountStore
    from sharedcare.storage.oauth import OAuthStore

    engine = database.make_engine(get_settings().database_url)
    try:
        database.upgrade(engine)
        change(AccountStore(engine), OAuthStore(engine))
    except accounts.AccountError as exc:
        console.print(f"[red]{exc}; nothing was changed[/red]")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument(help="The account to disable.")]) -> None:
    """Disable an account: it can no longer sign in, and its sessions and tokens end at once."""
    from sharedcare.access import accounts

    def change(store: Any, oauth: Any) -> None:
        revoked = accounts.disable(store, oauth, username)
        typer.echo(json.dumps({"username": username, "disabled": True, "tokens_revoked": revoked}))
    _account_change(change)


@users_app.command("enable")
def users_enable(username: Annotated[str, typer.Argument(help="The account to enable again.")]) -> None:
    """Enable a disabled account (it signs in afresh: nothing it held before comes back)."""
    from sharedcare.access import accounts

    def change(store: Any, _oauth: Any) -> None:
        accounts.enable(store, username)
        typer.echo(json.dumps({"username": username, "disabled": False}))
    _account_change(change)


@users_app.command("roles")
def users_roles(
    username: Annotated[str, typer.Argument(help="The staff account.")],
    role: Annotated[list[str], typer.Option(help="Every role profile it keeps, ODS:JOBROLE (repeatable).")],
) -> None:
    """Replace a staff account's role profiles. Tokens acting in a profile it no longer holds end at
    once; its sessions drop such a profile on their next request."""
    from sharedcare.access import accounts

    roles = _parse_roles(role)

    def change(store: Any, oauth: Any) -> None:
        revoked = accounts.set_roles(store, oauth, username, tuple(roles))
        typer.echo(json.dumps({"username": username, "roles": [f"{o}:{r}" for o, r in sorted(set(roles))],
                               "tokens_revoked": revoked}))
    _account_change(change)


@users_app.command("person")
def users_person(
    agent_id: Annotated[str, typer.Argument(
        help="The member of staff as the audit names them: user:<username> for a local account, cis2:<sub>.")],
    nhs_number: Annotated[str | None, typer.Option(help="Their own NHS number.")] = None,
    family_name: Annotated[str | None, typer.Option(help="Their family name.")] = None,
    postcode: Annotated[str | None, typer.Option(help="Their home postcode.")] = None,
) -> None:
    """Record who a member of staff is as a person (from the organisation's own records), so privacy
    officers are alerted when they look at their own record or a family member's (same family name
    and postcode). Replaces what was recorded before."""
    from sharedcare.access import privacy
    from sharedcare.storage import database

    engine = database.make_engine(get_settings().database_url)
    try:
        database.upgrade(engine)
        row = privacy.record_person(engine, agent_id, nhs_number=nhs_number, family_name=family_name,
                                    postcode=postcode)
    except ValueError as exc:
        console.print(f"[red]{exc}; nothing was changed[/red]")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    typer.echo(json.dumps({"agent_id": row["agent_id"], "nhs_number": bool(row["nhs_number"]),
                           "family_name": bool(row["family_name"]), "postcode": bool(row["postcode"])}))


@clients_app.command("add")
def clients_add(
    name: Annotated[str, typer.Argument(help="What the client is, e.g. 'Kingsway Surgery GP feed'.")],
    scope: Annotated[str, typer.Option(help="The most it may be granted (SMART v2), e.g. 'system/*.rs'.")],
    kind: Annotated[str, typer.Option(help="system (client credentials) or app (authorization code).")] = "system",
    auth_method: Annotated[str | None, typer.Option(
        help="client_secret_basic (default for systems), client_secret_post, private_key_jwt, or none "
        "(default for apps: a public client).")] = None,
    organisation: Annotated[str | None, typer.Option(
        help="ODS code of the source organisation a system client acts for.")] = None,
    jwks: Annotated[Path | None, typer.Option(help="For private_key_jwt: a JWKS file of public keys.")] = None,
    redirect_uri: Annotated[list[str] | None, typer.Option(help="An app's redirect URI (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Register a SMART client. Its secret (for client_secret_basic/_post) is printed once and kept
    only as a hash."""
    from sharedcare.access import oauth
    from sharedcare.storage import database
    from sharedcare.storage.oauth import OAuthStore

    settings = get_settings()
    try:
        jwks_text = jwks.read_text(encoding="utf-8") if jwks is not None else None
    except (OSError, UnicodeDecodeError):
        console.print(f"the JWKS file {str(jwks)!r} cannot be read", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    engine = database.make_engine(settings.database_url)
    try:
        database.upgrade(engine)
        row, secret = oauth.register_client(OAuthStore(engine), name, scope=scope, kind=kind, auth_method=auth_method,
                                            organisation=organisation, jwks=jwks_text,
                                            redirect_uris=tuple(redirect_uri or ()))
    except oauth.ClientError as exc:
        console.print(str(exc), style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    result = {"client_id": row.client_id, "token_endpoint": oauth.endpoints(settings).token}
    if secret is not None:
        result["client_secret"] = secret
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for k, v in result.items():
            typer.echo(f"{k}: {v}")
        if secret is not None:
            console.print("the client secret is shown only this once", style="yellow")


@clients_app.command("list")
def clients_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the clients as JSON.")] = False,
) -> None:
    """List the registered clients (never their secrets)."""
    from sharedcare.storage import database
    from sharedcare.storage.oauth import OAuthStore

    engine = database.make_engine(get_settings().database_url)
    try:
        database.upgrade(engine)
        rows = OAuthStore(engine).clients()
    finally:
        engine.dispose()
    listed = [{"client_id": r.client_id, "name": r.name, "kind": r.kind, "auth_method": r.auth_method,
               "scope": r.scope, "organisation": r.organisation, "redirect_uris": list(r.redirect_uris),
               "created": r.created, "disabled": r.disabled} for r in rows]
    if as_json:
        typer.echo(json.dumps(listed))
        return
    for c in listed:
        typer.echo(f"{c['client_id']}  {c['kind']}  {c['auth_method']}  {c['scope']}"
                   f"{'  (disabled)' if c['disabled'] else ''}  {c['name']}")


@clients_app.command("disable")
def clients_disable(client_id: Annotated[str, typer.Argument(help="The client to disable.")]) -> None:
    """Disable a client: it gets no more tokens, and the tokens it holds stop working at once."""
    from sharedcare.storage import database
    from sharedcare.storage.oauth import OAuthStore

    engine = database.make_engine(get_settings().database_url)
    try:
        database.upgrade(engine)
        found = OAuthStore(engine).disable_client(client_id)
    finally:
        engine.dispose()
    if not found:
        console.print("no client has that id; nothing was changed", style="red")
        raise typer.Exit(1)
    console.print("the client is disabled and its tokens are revoked")


def _truth_dir(path: Path) -> Path:
    truth = path / "truth" if (path / "truth").is_dir() else path
    if not (truth / "source-records.csv").is_file() or not (truth / "people.csv").is_file():
        raise typer.BadParameter(f"{path} holds no synthetic London truth (truth/source-records.csv and "
                                 "truth/people.csv, from `sharedcare synth`)")
    return truth


@mpi_app.command("train")
def mpi_train(
    synth: Annotated[Path, typer.Option(help="A synthetic London (`sharedcare synth --out DIR`) to train on, "
                                         "without its truth: only its source records are read.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the model (default: the one shipped "
                                             "in the package).")] = None,
    version: Annotated[str, typer.Option(help="The model's version, recorded in the file.")] = "1",
    link: Annotated[float, typer.Option(help="Match probability at or above which a pair links.")] = 0.99,
    review: Annotated[float, typer.Option(help="Match probability at or above which a pair is reviewed.")] = 0.5,
) -> None:
    """Train match weights with Splink (needs the `train` extra) and write the model file."""
    from sharedcare.mpi import evaluate, packaged
    from sharedcare.mpi.decide import Thresholds
    from sharedcare.mpi.train import train

    truth = _truth_dir(synth)
    try:
        thresholds = Thresholds(link=link, review=review)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    rows = evaluate.synth_records(truth)
    manifest_file = truth.parent / "manifest.json"
    made = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    trained_on = f"synthetic London: {len(rows)} source records" + (
        f" ({made.get('people')} people, seed {made.get('seed')}, as of {made.get('as_of')})" if made else "")
    written = packaged.write(out or packaged.MODEL_FILE, train([rows]), version=version, trained_on=trained_on,
                             thresholds=thresholds)
    typer.echo(json.dumps({"model": str(out or "package"), "version": written.version,
                           "trained_on": written.trained_on}))


@mpi_app.command("evaluate")
def mpi_evaluate(
    synth: Annotated[list[Path] | None, typer.Option(help="A synthetic London to score the shipped model on "
                                                     "(repeatable); use one it was not trained on.")] = None,
    febrl: Annotated[Path | None, typer.Option(help="The FEBRL data sets folder (dataset4a/4b.csv, "
                                               "dataset3.csv); weights are trained on them without labels.")] = None,
) -> None:
    """Precision and recall of automatic links, and the share sent to review, against known truth."""
    from sharedcare.mpi import evaluate, packaged
    from sharedcare.mpi.model import MatchModel
    from sharedcare.mpi.train import train

    shipped = packaged.load()
    results: dict[str, Any] = {"model": shipped.version,
                               "thresholds": {"link": shipped.thresholds.link, "review": shipped.thresholds.review}}
    for path in synth or []:
        rows = evaluate.synth_records(_truth_dir(path))
        results[f"synth:{path.name}"] = evaluate.evaluate(shipped.model, shipped.splink, [rows],
                                                          shipped.thresholds).as_dict()
    if febrl is not None:
        for name, files in (("febrl4", ["dataset4a.csv", "dataset4b.csv"]), ("febrl3", ["dataset3.csv"])):
            missing = [f for f in files if not (febrl / f).is_file()]
            if missing:
                raise typer.BadParameter(f"{febrl} has no {', '.join(missing)}")
            tables = [evaluate.febrl_records(febrl / f) for f in files]
            model = train(tables)
            results[name] = evaluate.evaluate(MatchModel(model), model, tables, shipped.thresholds).as_dict()
    typer.echo(json.dumps(results, indent=1))


@mpi_app.command("rebuild")
def mpi_rebuild() -> None:
    """Index and link every stored Patient the patient index does not hold yet, oldest first (a store
    loaded with linking deferred, or restored from a copy without the index); print counts."""
    import time

    from sharedcare.storage import database, mpi_store

    settings = get_settings()
    engine = database.make_engine(settings.database_url)
    try:
        if not database.is_current(engine):
            raise ConfigurationError("the database schema is not current: run `sharedcare db upgrade`")
        started = time.perf_counter()
        done = mpi_store.rebuild(engine, node=settings.node_id)
        with engine.connect() as conn:
            persons = mpi_store.count_persons(conn)
    finally:
        engine.dispose()
    typer.echo(json.dumps({"indexed": done, "persons": persons, "seconds": round(time.perf_counter() - started, 1)}))


@mpi_app.command("trace")
def mpi_trace(
    limit: Annotated[int, typer.Option(min=1, help="Most records to check in this round.")] = 1000,
    pds: Annotated[str | None, typer.Option(help="PDS FHIR API base URL (default SHAREDCARE_PDS_URL).")] = None,
) -> None:
    """Check the index's records not yet checked against PDS: verify their NHS numbers, or trace one
    for records without; print what was found (counts only)."""
    from sharedcare.mpi.pds import PdsClient
    from sharedcare.mpi.trace import trace_pending
    from sharedcare.storage import database, mpi_store

    settings = get_settings()
    url = pds or settings.pds_url
    if not url:
        raise typer.BadParameter("no PDS to ask: give --pds or set SHAREDCARE_PDS_URL", param_hint="--pds")
    engine = database.make_engine(settings.database_url)
    try:
        if not database.is_current(engine):
            raise ConfigurationError("the database schema is not current: run `sharedcare db upgrade`")
        done = trace_pending(engine, PdsClient(url, token=settings.pds_token), mpi_store.shipped_matcher(),
                             limit=limit)
        with engine.connect() as conn:
            totals = mpi_store.trace_counts(conn)
    finally:
        engine.dispose()
    typer.echo(json.dumps({"checked": dict(done.checked), "relinked": done.relinked, "stopped": done.stopped,
                           "index": totals}))
    if done.stopped:
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the version."""
    from sharedcare import __version__

    typer.echo(json.dumps({"sharedcare": __version__, "fhirVersion": "4.0.1"}))


def main() -> None:  # pragma: no cover - entry point
    try:
        app()
    except SharedcareError as exc:
        console.print(f"[red]{exc}[/red]")
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover - `python -m sharedcare.cli`
    main()
