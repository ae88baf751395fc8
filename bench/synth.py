"""Synthetic London generation speed and memory: `python -m bench.synth [--sizes 100000,1000000]`.

Each size runs `sharedcare synth` in its own process (so its peak memory is its own), and is set
beside a floor: serialising the same kind of FHIR output, already built in memory, to NDJSON (the
JSON writing the generator cannot avoid), measured on the FHIR feeds of a 20,000-person population and
scaled to the size. Issue 4's goals: at least 20,000 people a minute, and under 2 GiB of peak
memory at 1,000,000 people.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_generator(people: int, out: Path) -> tuple[float, float]:
    """Seconds and peak resident memory (MiB) of one `sharedcare synth` process (its own rusage)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sharedcare.cli", "synth", "--out", str(out), "--people",
                             str(people)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"sharedcare synth failed with exit code {proc.returncode}")
    return elapsed, usage.ru_maxrss / 1024  # KiB on Linux


SAMPLE = 20_000


def floor(people: int) -> float:
    """Seconds to write `people` people's FHIR feeds (GP records, ambulance incidents, hospital
    bundles) when they are already built: the JSON writing of a sample, scaled."""
    sample = min(people, SAMPLE)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        run_generator(sample, out)
        built = [json.loads(line) for path in sorted((out / "feeds").glob("*/*.ndjson"))
                 for line in path.read_text(encoding="utf-8").splitlines()]
        with (Path(tmp) / "x.ndjson").open("w", encoding="utf-8") as f:
            t = time.perf_counter()
            for res in built:
                f.write(json.dumps(res, ensure_ascii=False, separators=(",", ":")) + "\n")
            return (time.perf_counter() - t) * people / sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    # Every generator run first: a child's peak memory counts the parent it was forked from until it
    # execs, so the parent must not have built the floor's records yet.
    runs = {}
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            runs[size] = run_generator(size, Path(tmp) / "out")
    results = []
    for size in sizes:
        seconds, peak = runs[size]
        floor_s = floor(size)
        row = {"people": size, "seconds": round(seconds, 1), "people_per_min": round(size / seconds * 60),
               "peak_mib": round(peak), "floor_seconds": round(floor_s, 1),
               "ratio": round(floor_s / seconds, 3)}
        results.append(row)
        print(f"{size:>10,} people: {seconds:6.1f} s ({row['people_per_min']:,}/min), peak {peak:,.0f} MiB; "
              f"writing the same records pre-built: {floor_s:.1f} s (ratio {row['ratio']})", flush=True)
    out = Path(__file__).parent / "results" / "synth-latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
