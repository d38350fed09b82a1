"""The memory plan: what a run keeps in RAM / maps, its expected peak, and refusals that name a fit."""

from __future__ import annotations

import numpy as np

import gnnsys.features.memory_plan as mp
from gnnsys.cli import main
from gnnsys.data.synthetic import generate, get_preset

GIB = 2**30


def _meta(preset: str = "papers100m-like", scale: float = 1.0, dtype: str = "float32") -> dict:
    p = get_preset(preset, scale)
    return {"num_nodes": p.num_nodes, "num_edges": 2 * p.num_edges, "feature_shape": [p.num_nodes, 128],
            "feature_dtype": dtype, "files": {}}


def test_papers100m_cpu_refused_mmap_fits():
    meta = _meta()
    cpu = mp.plan_memory(meta, features="cpu", fanouts=[15, 10, 5], available=22 * GIB)
    assert cpu.refusal is not None and "--features mmap" in cpu.refusal
    table = next(i for i in cpu.items if i.name.startswith("features ["))
    assert table.where == "ram" and table.nbytes == 111_059_956 * 128 * 4
    mm = mp.plan_memory(meta, features="mmap", cache_gb=4, fanouts=[15, 10, 5], available=22 * GIB)
    assert mm.refusal is None, mm.lines()
    assert mm.mapped_bytes >= 111_059_956 * 128 * 4
    assert mm.peak_bytes < 16 * GIB  # the goal of issue 22 at scale 1
    # int8 training dtype: a quarter of the table, plus the scales in RAM
    q = mp.plan_memory(meta, features="mmap", feature_dtype="int8", fanouts=[15, 10, 5], available=22 * GIB)
    assert any(i.name.startswith("int8 scales") and i.nbytes == 4 * 111_059_956 for i in q.items)


def test_int8_on_the_gpu_placements_counts_the_device_scales():
    """uva/cached/gpu keep the int8 scales in RAM and a copy on the GPU (4 N bytes each); the
    GPU items never count towards the RAM peak."""
    meta = _meta(scale=0.1, dtype="int8")
    n = meta["num_nodes"]
    cpu = mp.plan_memory(meta, features="cpu", fanouts=[15, 10, 5], available=22 * GIB)
    assert cpu.gpu_bytes == 0 and "on the GPU" not in "\n".join(cpu.lines())
    for features, gpu_bytes in (("uva", 4 * n), ("cached", 4 * n + 4 * n), ("gpu", 4 * n + n * 128)):
        plan = mp.plan_memory(meta, features=features, fanouts=[15, 10, 5], available=22 * GIB)
        ram_scales = [i for i in plan.items if i.name.startswith("int8 scales") and i.where == "ram"]
        dev_scales = [i for i in plan.items if i.name.startswith("int8 scales") and i.where == "gpu"]
        assert [i.nbytes for i in ram_scales] == [4 * n] and [i.nbytes for i in dev_scales] == [4 * n]
        assert plan.gpu_bytes == gpu_bytes and plan.to_dict()["gpu"]
        assert plan.peak_bytes == cpu.peak_bytes  # the host copy is the same table in RAM
        assert "on the GPU" in "\n".join(plan.lines())


def test_refusals_name_what_fits():
    meta = _meta(scale=0.1)
    full = mp.plan_memory(meta, features="mmap", fanouts=[15, 10, 5], eval_full=True, available=20 * GIB)
    assert full.refusal is not None and "--eval-mode sampled" in full.refusal
    big_cache = mp.plan_memory(_meta(), features="mmap", cache_gb=30, fanouts=[15, 10, 5], available=20 * GIB)
    assert big_cache.refusal is not None and "smaller --cache-gb" in big_cache.refusal


def test_info_plan_and_train_refuse_with_one_line(tmp_path, monkeypatch, capsys):
    ds = generate("small", tmp_path / "d", seed=0)  # a 4.9 MiB float32 table
    assert main(["info", str(ds.path), "--plan", "--features", "mmap"]) == 0
    out = capsys.readouterr().out
    assert "memory-mapped" in out and "verdict: fits" in out
    table = int(np.asarray(ds.features).nbytes)
    # a machine whose usable RAM holds everything but the feature table
    monkeypatch.setattr(mp, "available_ram", lambda: int((mp.BASE_BYTES + table // 2) / mp.RAM_FRACTION) + 1)
    assert main(["info", str(ds.path), "--plan", "--features", "cpu", "--batch-size", "8",
                 "--fanouts", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "use --features mmap" in err and str(ds.path) in err
    rc = main(["train", "--dataset", str(ds.path), "--features", "cpu", "--batch-size", "8",
               "--fanouts", "2", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "use --features mmap" in err
