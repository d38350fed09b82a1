"""The distribution: one wheel with gnnsys and samplers, CUDA sources shipped as package data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_cuda_sources_and_both_packages(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("gnnsys-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    sources = sorted(p.name for p in (REPO / "cuda").iterdir() if p.suffix in (".cu", ".cuh"))
    assert sources, "cuda/ holds no kernel sources"
    for s in sources:
        assert f"gnnsys/kernels/{s}" in names
    assert "gnnsys/__init__.py" in names and "samplers/__init__.py" in names
    assert not any(n.startswith("cuda/") for n in names)  # never a top-level `cuda` package
    assert any(n.endswith("entry_points.txt") for n in names)
    # the installed copy is found through importlib.resources, as at run time
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    code = ("import gnnsys, gnnsys.features.kernels as k; "
            "assert gnnsys.__file__.startswith(%r), gnnsys.__file__; "
            "assert 'GNNSYS_DEFINE_GATHER(w16' in k.kernel_source()" % str(target))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "OUTDATED_IGNORE": "1"},
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_gnnsys_train_exports_resolve_lazily():
    """``gnnsys.train`` imports its public names on first use; each one in ``__all__`` has an
    entry in the lazy table and resolves to the object its submodule defines."""
    import importlib

    import gnnsys.train as gt
    from gnnsys.train.trainer import Trainer

    assert set(gt.__all__) == set(gt._EXPORTS)
    for name in gt.__all__:
        assert getattr(gt, name) is getattr(importlib.import_module(f"gnnsys.train.{gt._EXPORTS[name]}"), name)
    assert gt.Trainer is Trainer
