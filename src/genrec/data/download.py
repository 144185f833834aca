"""Known data sets: where they live, how they are fetched, how they are read.

Resolution of a known name (``ml-100k``, ``ml-1m``, ...), in order:

1. ``$GENREC_DATA_DIR/<folder>`` (the one environment variable genrec reads; documented in
   the README), e.g. ``GENREC_DATA_DIR=../shared/data`` finds ``../shared/data/ml-100k``;
2. the user cache, ``$XDG_CACHE_HOME/genrec`` or ``~/.cache/genrec``;
3. otherwise the official GroupLens archive is downloaded into the cache with a progress bar,
   its MD5 checked against the published checksum, and extracted atomically (into a temp
   folder, then renamed). Without network the error says where to put the files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genrec.errors import DataError
from genrec.io import file_digest

__all__ = ["KnownDataset", "KNOWN_DATASETS", "data_dirs", "resolve_known", "download"]

GROUPLENS = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class KnownDataset:
    name: str
    url: str
    md5: str | None  # None: GroupLens updates this archive, so no fixed checksum exists
    folder: str  # folder name inside the archive and on disk
    marker: str  # a file that must exist in the folder


KNOWN_DATASETS: dict[str, KnownDataset] = {
    d.name: d
    for d in [
        KnownDataset(
            "ml-100k",
            GROUPLENS + "ml-100k.zip",
            "0e33842e24a9c977be4e0107933c0723",
            "ml-100k",
            "u.data",
        ),
        KnownDataset(
            "ml-1m",
            GROUPLENS + "ml-1m.zip",
            "c4d9eecfca2ab87c1945afe126590906",
            "ml-1m",
            "ratings.dat",
        ),
        KnownDataset(
            "ml-10m",
            GROUPLENS + "ml-10m.zip",
            "ce571fd55effeba0271552578f2648bd",
            "ml-10M100K",
            "ratings.dat",
        ),
        KnownDataset(
            "ml-20m",
            GROUPLENS + "ml-20m.zip",
            "cd245b17a1ae2cc31bb14903e1204af3",
            "ml-20m",
            "ratings.csv",
        ),
        KnownDataset(
            "ml-25m",
            GROUPLENS + "ml-25m.zip",
            "6b51fb2759a8657d3bfcbfc42b592ada",
            "ml-25m",
            "ratings.csv",
        ),
        KnownDataset(
            "ml-latest-small",
            GROUPLENS + "ml-latest-small.zip",
            None,
            "ml-latest-small",
            "ratings.csv",
        ),
    ]
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genrec"


def data_dirs() -> list[Path]:
    """Folders searched for known data sets, in order."""
    dirs = []
    env = os.environ.get("GENREC_DATA_DIR")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(cache_dir())
    return dirs


def _find(known: KnownDataset) -> Path | None:
    for base in data_dirs():
        for folder in (known.folder, known.name):
            cand = base / folder
            if (cand / known.marker).is_file():
                return cand
    return None


def download(
    known: KnownDataset,
    target_dir: Path,
    *,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download and extract ``known`` into ``target_dir``; return the data folder.

    ``progress(bytes_done, bytes_total_or_None)`` is called as data arrives. The archive's
    MD5 is checked before anything is extracted; extraction goes to a temp folder that is
    renamed into place, so an interrupted download leaves nothing half-written.
    """
    url = url or known.url
    target_dir.mkdir(parents=True, exist_ok=True)
    final = target_dir / known.folder
    with tempfile.TemporaryDirectory(dir=target_dir, prefix=".download-") as tmp:
        archive = Path(tmp) / "archive.zip"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(archive, "wb") as f:
                total = resp.headers.get("Content-Length")
                total_n = int(total) if total and total.isdigit() else None
                done = 0
                while chunk := resp.read(1 << 16):
                    f.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total_n)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise DataError(
                f"{known.name}: download from {url} failed ({reason}); with no network, put the "
                f"unzipped folder at {target_dir / known.folder} or set GENREC_DATA_DIR to a "
                f"folder holding {known.folder}/"
            ) from None
        if known.md5 is not None:
            got = file_digest(archive, "md5")
            if got != known.md5:
                raise DataError(
                    f"{known.name}: checksum mismatch for {url} (md5 {got}, "
                    f"expected {known.md5}); the download is corrupt, try again"
                )
        extract = Path(tmp) / "extract"
        try:
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():  # refuse paths escaping the folder
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise DataError(f"{known.name}: unsafe path {member!r} in archive")
                z.extractall(extract)
        except zipfile.BadZipFile:
            raise DataError(f"{known.name}: {url} is not a zip archive") from None
        src = extract / known.folder
        if not (src / known.marker).is_file():
            raise DataError(f"{known.name}: archive has no {known.folder}/{known.marker}")
        if final.exists():
            shutil.rmtree(final)
        os.replace(src, final)
    return final


def resolve_known(
    name: str,
    *,
    allow_download: bool = True,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """The folder of the known data set ``name``, downloading it when missing."""
    known = KNOWN_DATASETS[name]
    found = _find(known)
    if found is not None:
        return found
    where = ", ".join(str(d / known.folder) for d in data_dirs())
    if not allow_download:
        raise DataError(
            f"{name}: not found (looked in {where}); put the unzipped GroupLens "
            f"folder there or allow the download"
        )
    return download(known, cache_dir(), url=url, progress=progress)
