import os

import pytest


# tests never touch the network or ../shared: known data sets resolve to an empty folder
@pytest.fixture(autouse=True)
def _isolated_data_dirs(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("GENREC_DATA_DIR", str(root / "no-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))
    os.environ.pop("GENREC_ALLOW_NETWORK", None)
