"""A 25M-row ratings log read two ways: the batched reader against the careful one.

A synthetic MovieLens-style ``ratings.csv`` (``userId,movieId,rating,timestamp``; 162,541
users and 59,047 movies as ML-25M, 25,000,095 rows by default, ids drawn from Zipf-like
popularity, half-star ratings, timestamps) is written once into ``--cache`` (pyarrow's CSV
writer). Each reader then turns it into a Dataset (``read_ml_csv``: Interactions and the
time-ordered sequences) in a fresh process, which reports its wall seconds and its peak
resident memory (``ru_maxrss``):

* batched: the default path of ``read_ml_csv``, ``genrec.data.readers.batched`` (pyarrow's
  streaming CSV reader into typed arrays);
* careful: the same call with the batched path switched off, which is how every ratings.csv
  was read before it (the whole file as text, a table of strings, checked field by field).

Targets (issue 25): peak RSS <= 3 GiB for the batched reader, and at least 2x faster than
the careful one. ``--kind generic`` reads the same rows as a generic log (``read_log`` on
``log.csv`` with the header ``user,item,rating,timestamp``; its batched path is
``scan_log``). Usage: python benchmarks/bench_biglog.py [--rows N] [--cache DIR]
[--readers batched,careful] [--kind movielens|generic] [--out NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import header, write_result

N_USERS, N_ITEMS, N_ROWS = 162_541, 59_047, 25_000_095  # ML-25M's shape


def write_log(folder: Path, rows: int, seed: int = 0) -> Path:
    """The synthetic ratings.csv in ``folder`` (written once; reused when its size matches)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    path = folder / f"ml-synthetic-{rows}" / "ratings.csv"
    done = path.with_suffix(".done")
    if path.is_file() and done.is_file() and done.read_text() == str(path.stat().st_size):
        return path.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    schema = pa.schema(
        [
            ("userId", pa.int64()),
            ("movieId", pa.int64()),
            ("rating", pa.float32()),
            ("timestamp", pa.int64()),
        ]
    )
    with open(tmp, "wb") as f:
        f.write(b"userId,movieId,rating,timestamp\n")  # unquoted, as MovieLens writes it
        w = pcsv.CSVWriter(f, schema, write_options=pcsv.WriteOptions(include_header=False))
        step = 2_000_000
        item_p = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.9
        item_p /= item_p.sum()
        for a in range(0, rows, step):
            n = min(step, rows - a)
            users = np.sort(rng.integers(1, N_USERS + 1, n))  # grouped by user, as ML's files
            w.write_table(
                pa.table(
                    {
                        "userId": users,
                        "movieId": rng.choice(N_ITEMS, n, p=item_p) + 1,
                        "rating": (rng.integers(1, 11, n) / 2).astype(np.float32),
                        "timestamp": rng.integers(789_652_009, 1_574_327_703, n),
                    },
                    schema=schema,
                )
            )
        w.close()
    os.replace(tmp, path)
    done.write_text(str(path.stat().st_size))
    return path.parent


def generic_log(folder: Path) -> Path:
    """The same rows as a generic log, ``user,item,rating,timestamp`` (written once)."""
    import shutil

    path = folder / "log.csv"
    src = folder / "ratings.csv"
    done = path.with_suffix(".done")
    if path.is_file() and done.is_file() and done.read_text() == str(src.stat().st_size):
        return path
    tmp = path.with_suffix(".tmp")
    with open(src, "rb") as f, open(tmp, "wb") as g:
        f.readline()
        g.write(b"user,item,rating,timestamp\n")
        shutil.copyfileobj(f, g, 1 << 24)
    os.replace(tmp, path)
    done.write_text(str(src.stat().st_size))
    return path


def child(reader: str, folder: str, kind: str = "movielens") -> None:
    """Read ``folder`` with ``reader`` and print seconds, peak RSS and sizes as JSON."""
    import resource

    from genrec.data.readers import logs, movielens

    if reader == "careful":
        movielens.scan_ml_csv_ratings = lambda path: None  # type: ignore[assignment]
        logs.BATCHED_LOG_BYTES = 1 << 62
    t0 = time.perf_counter()
    if kind == "generic":
        ds = logs.read_log(Path(folder) / "log.csv")
    else:
        ds = movielens.read_ml_csv(folder, "ml-synthetic")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    m = ds.interactions.matrix
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_gib": peak,
                "users": m.shape[0],
                "items": m.shape[1],
                "nnz": int(m.nnz),
                "sequence_events": int(ds.sequences.offsets[-1]) if ds.sequences else 0,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=N_ROWS)
    ap.add_argument(
        "--cache", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "genrec-biglog")
    )
    ap.add_argument("--readers", default="batched,careful")
    ap.add_argument("--kind", choices=("movielens", "generic"), default="movielens")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    out = args.out or ("biglog" if args.kind == "movielens" else "biglog-generic")
    top = header(
        "A 25M-row ratings log: the batched reader against the careful one"
        if args.kind == "movielens"
        else "A 25M-row generic log (read_log): the batched reader against the careful one"
    )
    t0 = time.perf_counter()
    folder = write_log(Path(args.cache), args.rows)
    if args.kind == "generic":
        generic_log(folder)
    size = (folder / "ratings.csv").stat().st_size
    print(
        f"log: {folder / 'ratings.csv'} ({size / 1024**3:.2f} GiB), {time.perf_counter() - t0:.0f} s"
    )
    results = {}
    for reader in args.readers.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", reader, str(folder), args.kind],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            results[reader] = {"error": tail}
        else:
            results[reader] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(reader, results[reader], flush=True)
    lines = [top]
    what = (
        "a synthetic MovieLens-style `ratings.csv`"
        if args.kind == "movielens"
        else "a generic log `log.csv` (header `user,item,rating,timestamp`)"
    )
    call = "`read_ml_csv`" if args.kind == "movielens" else "`read_log`"
    lines.append(
        f"{what[0].upper() + what[1:]}: {args.rows:,} rows, {size / 1024**3:.2f} GiB, "
        f"ML-25M's {N_USERS:,} users and {N_ITEMS:,} movies (Zipf-like item popularity), "
        f"read by {call} into a Dataset (the Interactions matrix and the time-ordered "
        f"sequences) in a fresh process per reader; seconds of wall time and peak resident "
        f"memory (`ru_maxrss`) of that process. Careful: the batched path switched off, how "
        f"every such log was read before.\n\n"
    )
    lines.append(
        "| reader | seconds | peak RSS GiB | users | items | interactions |\n|---|---|---|---|---|---|\n"
    )
    for reader, r in results.items():
        if "error" in r:
            lines.append(f"| {reader} | failed: {r['error']} | | | | |\n")
        else:
            lines.append(
                f"| {reader} | {r['seconds']:.1f} | {r['peak_gib']:.2f} | {r['users']:,} | {r['items']:,} | {r['nnz']:,} |\n"
            )
    b, c = results.get("batched", {}), results.get("careful", {})
    if "seconds" in b:
        ok = b["peak_gib"] <= 3.0
        lines.append(
            f"\n| target | measured | needed | |\n|---|---|---|---|\n"
            f"| batched peak RSS | {b['peak_gib']:.2f} GiB | <= 3 GiB | {'**met**' if ok else '**not met**'} |\n"
        )
        if "seconds" in c:
            speed = c["seconds"] / b["seconds"]
            lines.append(
                f"| batched vs careful, same file and run | {speed:.1f}x faster | >= 2x | {'**met**' if speed >= 2 else '**not met**'} |\n"
            )
    text = "".join(lines)
    write_result(out, text)
    print(text)


if __name__ == "__main__":
    main()
