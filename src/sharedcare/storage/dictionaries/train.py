"""Train a zstd dictionary for stored resources (a one-off build step, not run by `make`).

    uv run python -m sharedcare.storage.dictionaries.train CONFORMANCE_DIR/synthea-r4 OUT.zdict DICT_ID

A shipped dictionary is immutable: every row compressed with it needs it to be read, so it is never
retrained under the same id. A better dictionary gets a new id and a new file, and storage/codec.py
keeps every dictionary it ever wrote with (see docs/storage.md).

`r4-1.zdict` (id 0x53430001) was trained on the first 10 Synthea R4 bundles (alphabetical order) of
the project's conformance data: resources serialised the way the store writes them (compact JSON,
`resourceType` first). It holds common substrings of FHIR R4 JSON (element names, code systems,
structure) learnt from synthetic patients; no real person's data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import zstandard

SIZE = 64 * 1024
FILES = 10


def samples(folder: Path) -> list[bytes | bytearray | memoryview]:
    out: list[bytes | bytearray | memoryview] = []
    for path in sorted(folder.glob("*.json"))[:FILES]:
        bundle = orjson.loads(path.read_bytes())
        for entry in bundle.get("entry", []):
            res = entry.get("resource")
            if isinstance(res, dict):
                ordered = {"resourceType": res.get("resourceType"), **res}
                out.append(orjson.dumps(ordered))
    return out


def main(argv: list[str]) -> None:
    folder, out, dict_id = Path(argv[0]), Path(argv[1]), int(argv[2], 0)
    data = samples(folder)
    d = zstandard.train_dictionary(SIZE, data, dict_id=dict_id, level=3, threads=1)
    out.write_bytes(d.as_bytes())
    print(f"{out.name}: {len(d.as_bytes()):,} bytes from {len(data):,} resources, id {d.dict_id():#x}")


if __name__ == "__main__":
    main(sys.argv[1:])
