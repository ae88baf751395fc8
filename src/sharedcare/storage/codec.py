"""How resource JSON is kept in the `data` columns: zstd frames made with a shipped dictionary.

FHIR JSON repeats itself (element names, code systems, structure), so a dictionary learnt from FHIR
resources shrinks a typical 1.4 KB resource about fivefold, where plain zstd manages about twofold.
Every version is kept twice (`resource` and `resource_history`), so this is most of the store's
size at regional scale.

- `encode` compresses with the newest dictionary; `decode` returns the exact bytes that were
  encoded, so a read still returns the stored JSON unchanged (never re-serialised).
- Rows written before compression (plain JSON, starting with `{`) are returned as they are: the two
  kinds can share a table, and no migration rewrites old rows.
- Each frame names its dictionary. Dictionaries are immutable files in `dictionaries/` with a pinned
  SHA-256: a changed or missing file stops the store instead of making records unreadable later, and
  a frame naming an unknown dictionary is a StorageCorrupt error, never an empty or wrong record.
"""

from __future__ import annotations

import hashlib
import threading
from functools import cache
from pathlib import Path

import zstandard

from sharedcare.errors import StorageCorrupt

FOLDER = Path(__file__).parent / "dictionaries"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
LEVEL = 3
# Every dictionary ever shipped, by the id its frames carry: file name and SHA-256. Never edit or
# remove an entry (rows written with it would become unreadable); add one and point CURRENT at it.
DICTIONARIES: dict[int, tuple[str, str]] = {
    0x53430001: ("r4-1.zdict", "fc2f5efaf1e3082a4023e6f3795fb76099aa1d9f471b1649f94adc951c923c1d"),
}
CURRENT = 0x53430001


@cache
def dictionary(dict_id: int) -> zstandard.ZstdCompressionDict:
    """The shipped dictionary with this id, checked against its pinned SHA-256."""
    if dict_id not in DICTIONARIES:
        raise StorageCorrupt(f"a stored record names compression dictionary {dict_id:#x}, which this "
                             "version of sharedcare does not have")
    name, digest = DICTIONARIES[dict_id]
    try:
        raw = (FOLDER / name).read_bytes()
    except OSError as exc:
        raise StorageCorrupt(f"compression dictionary {name} is missing from the installation") from exc
    if hashlib.sha256(raw).hexdigest() != digest:
        raise StorageCorrupt(f"compression dictionary {name} does not match its pinned checksum")
    d = zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_FULLDICT)
    if d.dict_id() != dict_id:
        raise StorageCorrupt(f"compression dictionary {name} carries id {d.dict_id():#x}, not {dict_id:#x}")
    return d


class _Codecs:
    """zstd (de)compressors are not safe to share between threads: each thread has its own."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=LEVEL, dict_data=dictionary(CURRENT),
                                                   write_content_size=True, write_checksum=True)
        self.decompressors: dict[int, zstandard.ZstdDecompressor] = {}

    def decompressor(self, dict_id: int) -> zstandard.ZstdDecompressor:
        d = self.decompressors.get(dict_id)
        if d is None:
            d = self.decompressors[dict_id] = zstandard.ZstdDecompressor(dict_data=dictionary(dict_id))
        return d


_local = threading.local()


def _codecs() -> _Codecs:
    codecs: _Codecs | None = getattr(_local, "codecs", None)
    if codecs is None:
        codecs = _local.codecs = _Codecs()
    return codecs


def encode(json_bytes: bytes) -> bytes:
    """The bytes to store for a resource's JSON."""
    return _codecs().compressor.compress(json_bytes)


def decode(stored: bytes | memoryview) -> bytes:
    """The resource JSON stored as `stored` (plain JSON rows pass through unchanged)."""
    raw = bytes(stored)
    if raw[:1] == b"{":
        return raw
    if raw[:4] != ZSTD_MAGIC:
        raise StorageCorrupt("a stored record is neither JSON nor a zstd frame")
    try:
        dict_id = zstandard.get_frame_parameters(raw).dict_id
        return _codecs().decompressor(dict_id).decompress(raw)
    except zstandard.ZstdError as exc:
        raise StorageCorrupt("a stored record failed to decompress (damaged or truncated)") from exc


def decode_opt(stored: bytes | memoryview | None) -> bytes | None:
    """`decode`, passing None (a deletion) through."""
    return None if stored is None else decode(stored)


def warm() -> None:
    """Load and check every shipped dictionary now (at start-up), so a damaged installation fails
    before it serves rather than on the first read of an old record."""
    for dict_id in DICTIONARIES:
        dictionary(dict_id)
