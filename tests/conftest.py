"""Shared fixtures: real datasets from ../shared/data (copied to a temp dir), synthetic presets."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("OUTDATED_IGNORE", "1")  # no ogb version-check thread in tests

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GNNSYS_SHARED_DATA", REPO.parent / "shared" / "data"))


def _shared(sub: str) -> Path:
    p = SHARED_DATA / sub
    if not p.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{p} missing: CI must have shared/data beside the checkout")
        pytest.skip(f"{p} not available on this machine")
    return p


@pytest.fixture(scope="session")
def shared_data():
    """``shared_data(sub)``: the path of ``shared/data/<sub>``; a missing folder fails the test in CI
    (env ``CI`` set) and skips it elsewhere."""
    return _shared


@pytest.fixture(scope="session")
def planetoid_root(tmp_path_factory) -> Path:
    """A private copy of shared/data/planetoid (PyG raw layout: <root>/Cora/raw/ind.cora.*)."""
    dst = tmp_path_factory.mktemp("planetoid")
    shutil.copytree(_shared("planetoid"), dst, dirs_exist_ok=True)
    return dst


@pytest.fixture(scope="session")
def ogb_root(tmp_path_factory) -> Path:
    """A private copy of shared/data/ogb (OGB layout: <root>/ogbl_ddi/...)."""
    dst = tmp_path_factory.mktemp("ogb")
    shutil.copytree(_shared("ogb"), dst, dirs_exist_ok=True)
    return dst


@pytest.fixture(scope="session")
def cora(planetoid_root, tmp_path_factory):
    from gnnsys.data.sources import from_planetoid

    return from_planetoid("Cora", planetoid_root, tmp_path_factory.mktemp("ds") / "cora")


@pytest.fixture(scope="session")
def citeseer(planetoid_root, tmp_path_factory):
    from gnnsys.data.sources import from_planetoid

    return from_planetoid("CiteSeer", planetoid_root, tmp_path_factory.mktemp("ds") / "citeseer")


@pytest.fixture(scope="session")
def ddi(ogb_root, tmp_path_factory):
    from gnnsys.data.sources import from_ogb

    return from_ogb("ogbl-ddi", ogb_root, tmp_path_factory.mktemp("ds") / "ddi")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The 1,000-node synthetic node-classification preset (seed 0)."""
    from gnnsys.data import synthetic

    return synthetic.generate("tiny", tmp_path_factory.mktemp("ds") / "tiny", seed=0)


@pytest.fixture(scope="session")
def link_tiny(tmp_path_factory):
    """The 1,000-node synthetic link-prediction preset (seed 0)."""
    from gnnsys.data import synthetic

    return synthetic.generate("link-tiny", tmp_path_factory.mktemp("ds") / "link_tiny", seed=0)
