"""The watched drop folder for file feeds (`sharedcare watch`, and `sharedcare serve` with
SHAREDCARE_DROP_DIR): `<dir>/<source-id>/` is one registered source's folder. Each complete file in it
goes into the inbox through the same code as `sharedcare ingest` (files.ingest_file), as that source
and no other, and is then moved to `done/`, or to `failed/` beside a `<name>.reason.txt` of our own
reasons (docs/ingest.md, "Drop folder").

- Complete files only: names starting with `.` or ending `.part` or `.tmp` are never taken (writers
  write, then rename), and a file is taken only when two scans in a row found it the same size and
  modification time.
- A file in source X's folder is X's data only: FHIR and CSV files are stored as X; every HL7 v2
  message must name X (MSH-4 its ODS code, MSH-3 its system when it has one) or it is refused and the
  file goes to `failed/` (sources.identify, with the folder's source bound to the peer).
- An unknown folder, a disabled source's or the node's own: its files stay where they are, with one
  warning in the log per folder per run.
- Moved only after the inbox commit. A crash between the two leaves the file to be taken again, which
  stores nothing new (the inbox's keys: MSH-10, the file's SHA-256 and line or row). The store out of
  reach: the file stays, to be taken again at the next scan.

Logs name folders and files, never what is in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from sharedcare.errors import ServiceUnavailable
from sharedcare.ingest import sources
from sharedcare.ingest.files import Report, ingest_file
from sharedcare.ingest.inbox import Inbox, Unavailable
from sharedcare.storage import inbox_store

log = logging.getLogger("sharedcare.dropfolder")

KINDS = (".hl7", ".json", ".ndjson", ".csv")
IGNORED_ENDINGS = (".part", ".tmp")
DONE, FAILED = "done", "failed"
REASON_SUFFIX = ".reason.txt"


@dataclass
class Scan:
    """What one scan did: files taken (moved to done/ or failed/), files waiting for the next scan
    (new, or changed since the last), files left in place because the store could not be reached,
    folders left alone (unknown or disabled sources), and the message counts of the files taken."""

    done: int = 0
    failed: int = 0
    waiting: int = 0
    left: int = 0
    folders_left_alone: int = 0
    report: Report = field(default_factory=Report)

    @property
    def taken(self) -> int:
        return self.done + self.failed


def complete_name(name: str) -> bool:
    """Whether a file's name says it is complete (not hidden, not a writer's `.part` or `.tmp`)."""
    lower = name.lower()
    return not name.startswith(".") and not lower.endswith(IGNORED_ENDINGS)


def peer_for(source: inbox_store.Source) -> sources.Peer:
    """The peer a drop folder's HL7 v2 messages come from: trusted with the file (no transport to check)
    but bound to the folder's source, so a message naming any other source is refused."""
    return sources.Peer(f"drop folder {source.source_id}", True, None, trusted=True, source_id=source.source_id)


class Watcher:
    """Scans one drop folder; remembers between scans what it saw, and which folders it warned about."""

    def __init__(self, inbox: Inbox, root: Path) -> None:
        self.inbox = inbox
        self.root = root
        self._seen: dict[Path, tuple[int, int]] = {}
        self._warned: set[str] = set()
        self._root_warned = False

    def scan(self) -> Scan:
        out = Scan()
        seen: dict[Path, tuple[int, int]] = {}
        try:
            with os.scandir(self.root) as entries:
                folders = sorted((e for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")),
                                 key=lambda e: e.name)
        except OSError as exc:
            if not self._root_warned:
                log.error("drop folder: %r cannot be read (%s)", str(self.root), type(exc).__name__)
                self._root_warned = True
            return out
        self._root_warned = False
        for i, folder in enumerate(folders):
            try:
                source = self._source(folder.name)
            except (DBAPIError, ServiceUnavailable) as exc:
                log.error("drop folder: the store cannot be reached (%s); trying again next scan",
                          type(exc).__name__)
                out.report.unavailable += 1
            else:
                if source is None:
                    out.folders_left_alone += 1
                    continue
                for path, stat in self._candidates(Path(folder.path)):
                    seen[path] = stat
                    if self._seen.get(path) != stat:
                        out.waiting += 1  # new, or still being written: taken once a scan finds it unchanged
                    elif out.report.unavailable or not self._take(path, source, out):
                        out.left += 1
                    else:
                        del seen[path]
            if out.report.unavailable:  # what the other folders held is taken when the store is back
                rest = {f.name for f in folders[i + 1:]} | {folder.name}
                seen |= {p: s for p, s in self._seen.items() if p.parent.name in rest and p not in seen}
                break
        self._seen = seen
        return out

    def _source(self, name: str) -> inbox_store.Source | None:
        """The registered, active source a folder belongs to (its done/ and failed/ made), else None
        with one warning per folder per run."""
        source = inbox_store.get_source(self.inbox.engine, name) if name != inbox_store.NODE_SOURCE else None
        if name == inbox_store.NODE_SOURCE:
            problem = "is the node's own source, which takes no files from a drop folder"
        elif source is None:
            problem = "is not a registered source"
        elif not source.active:
            problem = "is a disabled source"
        else:
            try:
                for sub in (DONE, FAILED):
                    (self.root / name / sub).mkdir(exist_ok=True)
            except OSError as exc:
                problem = f"cannot hold done/ and failed/ ({type(exc).__name__})"
            else:
                self._warned.discard(name)
                return source
        if name not in self._warned:
            log.warning("drop folder: %r %s; its files are left where they are", name, problem)
            self._warned.add(name)
        return None

    @staticmethod
    def _candidates(folder: Path) -> list[tuple[Path, tuple[int, int]]]:
        """The complete-looking regular files of a folder (links and folders are left alone), by name,
        with their size and modification time."""
        found = []
        try:
            with os.scandir(folder) as entries:
                for e in entries:
                    if complete_name(e.name) and e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        found.append((Path(e.path), (st.st_size, st.st_mtime_ns)))
        except OSError as exc:
            log.error("drop folder: %r cannot be read (%s)", folder.name, type(exc).__name__)
        return sorted(found)

    def _take(self, path: Path, source: inbox_store.Source, out: Scan) -> bool:
        """Put one file into the inbox, then move it: True when it is gone from the folder, False when
        it stays to be taken again (the store out of reach, or it could not be moved)."""
        report = Report()
        if path.suffix.lower() not in KINDS:
            report.unreadable += 1
            report.problems.append(f"{path.name}: not a kind of file the drop folder takes ({', '.join(KINDS)})")
        else:
            try:
                ingest_file(self.inbox, path, source, report, peer=peer_for(source))
            except (Unavailable, DBAPIError, ServiceUnavailable) as exc:
                report.unavailable += 1
                log.error("drop folder: %r could not be stored (%s); trying again next scan", path.name,
                          type(exc).__name__)
            except Exception as exc:  # kept with our reason, never lost and never retried for ever
                report.unreadable += 1
                report.problems.append(f"{path.name}: could not be taken (internal error {type(exc).__name__})")
                log.error("drop folder: %r could not be taken (%s)", path.name, type(exc).__name__)
        if report.unavailable:
            out.report.unavailable += report.unavailable
            return False
        if not path.exists():
            log.warning("drop folder: %r went away before it was taken", path.name)
            return True
        failed = bool(report.refused or report.unreadable)
        try:
            moved = _move(path, FAILED if failed else DONE)
        except OSError as exc:
            log.error("drop folder: %r was stored but could not be moved (%s); it will be taken again, "
                      "which stores nothing twice", path.name, type(exc).__name__)
            return False
        _add(out.report, report)
        if failed:
            out.failed += 1
            _write_reason(moved, report)
            log.warning("drop folder: %r of source %s moved to failed/ (%d refused, %d unreadable; %d stored)",
                        path.name, source.source_id, report.refused, report.unreadable, report.stored)
        else:
            out.done += 1
            log.info("drop folder: %r of source %s moved to done/ (%d stored, %d already received)", path.name,
                     source.source_id, report.stored, report.duplicates)
        return True


def _move(path: Path, sub: str) -> Path:
    """Move a file into its folder's `done/` or `failed/`, its name prefixed with the UTC time (and a
    counter, should that name be taken), so the same name dropped again never replaces it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.parent / sub / f"{stamp}-{path.name}"
    n = 1
    while target.exists() or target.with_name(target.name + REASON_SUFFIX).exists():
        target = path.parent / sub / f"{stamp}-{n}-{path.name}"
        n += 1
    path.rename(target)
    return target


def _write_reason(moved: Path, report: Report) -> None:
    """`<name>.reason.txt` beside a failed file: our own reasons (the report's problems), never contents."""
    reason = moved.with_name(moved.name + REASON_SUFFIX)
    text = (f"{report.stored} messages stored, {report.duplicates} already received, {report.refused} refused, "
            f"{report.unreadable} unreadable\n" + "".join(f"{line}\n" for line in report.problems))
    try:
        partial = reason.with_name("." + reason.name + ".part")
        partial.write_text(text, encoding="utf-8")
        partial.rename(reason)
    except OSError as exc:
        log.error("drop folder: the reasons for %r could not be written (%s)", moved.name, type(exc).__name__)


def _add(total: Report, one: Report) -> None:
    total.stored += one.stored
    total.duplicates += one.duplicates
    total.refused += one.refused
    total.unreadable += one.unreadable
    total.problems += one.problems


def once(inbox: Inbox, root: Path, settle_s: float) -> Scan:
    """One pass for `sharedcare watch --once`: look, wait `settle_s`, and take what did not change."""
    watcher = Watcher(inbox, root)
    watcher.scan()
    time.sleep(settle_s)
    return watcher.scan()


async def watch(inbox: Inbox, root: Path, stop: asyncio.Event, *, poll_s: float) -> None:
    """Scan every `poll_s` seconds until `stop` is set (the inbox worker processes what is taken)."""
    watcher = Watcher(inbox, root)
    log.info("drop folder: watching %r every %.1f s", str(root), poll_s)
    while not stop.is_set():
        try:
            await asyncio.to_thread(watcher.scan)
        except Exception as exc:  # never let the watcher die; the kind only, no content
            log.error("drop folder: a scan failed (%s)", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_s)


async def run(inbox: Inbox, root: Path, stop: asyncio.Event, *, poll_s: float, worker: bool) -> None:
    """Watch the drop folder until `stop` is set, with an inbox worker beside it when `worker` (none
    when another, such as the MLLP listener's, already runs in this process)."""
    tasks = [asyncio.create_task(watch(inbox, root, stop, poll_s=poll_s))]
    if worker:
        tasks.append(asyncio.create_task(inbox.run(stop)))
    await asyncio.gather(*tasks)
