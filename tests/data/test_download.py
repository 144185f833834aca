"""The download path, against a local HTTP server on 127.0.0.1 (never the internet)."""

import functools
import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from genrec.data import load_dataset
from genrec.data.download import KNOWN_DATASETS, KnownDataset, download, resolve_known
from genrec.errors import DataError
from tests.synthetic import write_ml100k


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _zip_ml100k(tmp_path, root):
    src = write_ml100k(tmp_path / "src" / "ml-100k")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(src.iterdir()):
            z.write(f, f"ml-100k/{f.name}")
    (root / "ml-100k.zip").write_bytes(buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest()


def test_download_verifies_checksum_and_extracts(tmp_path, server):
    root, url = server
    md5 = _zip_ml100k(tmp_path, root)
    known = KnownDataset("ml-100k", url + "ml-100k.zip", md5, "ml-100k", "u.data")
    seen = []
    folder = download(known, tmp_path / "cache", progress=lambda d, t: seen.append((d, t)))
    assert (folder / "u.data").is_file()
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached the content length
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".download")]


def test_checksum_mismatch_leaves_nothing(tmp_path, server):
    root, url = server
    _zip_ml100k(tmp_path, root)
    known = KnownDataset("ml-100k", url + "ml-100k.zip", "0" * 32, "ml-100k", "u.data")
    with pytest.raises(DataError, match="checksum mismatch"):
        download(known, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_known_name_downloads_into_cache_then_loads(tmp_path, server, monkeypatch):
    root, url = server
    md5 = _zip_ml100k(tmp_path, root)
    monkeypatch.setitem(
        KNOWN_DATASETS,
        "ml-100k",
        KnownDataset("ml-100k", url + "ml-100k.zip", md5, "ml-100k", "u.data"),
    )
    ds = load_dataset("ml-100k")
    assert ds.name == "ml-100k" and ds.interactions.nnz > 0
    assert resolve_known("ml-100k", allow_download=False).is_dir()  # now cached


def test_no_network_error_says_where_to_put_files(tmp_path, server):
    root, url = server  # nothing served: 404
    known = KnownDataset("ml-1m", url + "missing.zip", None, "ml-1m", "ratings.dat")
    with pytest.raises(DataError, match=r"download from .* failed .*put the unzipped folder at"):
        download(known, tmp_path / "cache")


def test_data_dir_env_is_searched_first(tmp_path, monkeypatch):
    write_ml100k(tmp_path / "data" / "ml-100k")
    monkeypatch.setenv("GENREC_DATA_DIR", str(tmp_path / "data"))
    assert resolve_known("ml-100k", allow_download=False) == tmp_path / "data" / "ml-100k"
