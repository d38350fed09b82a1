"""The one-shot GPU check: everything a GPU run proves, in one command, within about 6 minutes.

    bash bench/gpu_check.sh            # on a machine with one NVIDIA GPU (H100 / H200)
    bash bench/gpu_check.sh --dry-run  # versions and CUDA agreement only; without a GPU: exit 1

For the GPU machines this project may be lent: a CUDA build of torch, cupy, numba, PyG,
scikit-learn and tensorboard preinstalled, no ogb, no network. It installs nothing: gnnsys runs
from this checkout through ``PYTHONPATH``; pytest, when missing, from the pure-Python wheels in
``bench/wheels`` (unzipped into a temporary folder). Steps, each in its own process with its own
time limit, so that one that fails, hangs or crashes is reported (``ok: false`` and its reason)
and the next one still runs:

1. ``versions``: what was found, and whether torch's and cupy's CUDA majors agree;
2. ``gpu_tests``: every test marked ``gpu`` (``tests/test_gpu.py``);
3. ``gather``: the zero-copy gather (``uva``) in GB/s against a pinned ``cudaMemcpy`` of the same
   bytes and against CPU gather + copy (placement ``cpu`` on the GPU) and the resident ``gpu``
   placement; float32 and float16 rows of 100 (goal: zero-copy >= 0.85x the memcpy); and an int8
   table on ``uva`` (codes read zero-copy, dequantised by the kernel) against the CPU int8 gather
   + copy, checked equal bit for bit first;
4. ``dataset`` (the products-like subset, generated once) and ``sampler``: the GPU sampler
   against the CPU one (same samples; time per batch);
5. ``train``: 2 epochs on a products-like subset with ``--features uva``, ``gpu`` and ``cpu``
   (plain gather + copy, and with the first hop aggregated in the gather), losses compared
   (goal: a ``uva`` epoch >= 1.3x faster than ``cpu`` gathering + copy).

The last line is one JSON object with every number and every failure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: seconds the whole check may take, and each step's share.
TOTAL_S = 345
STEP_S = {"versions": 45, "gpu_tests": 130, "gather": 75, "dataset": 60, "sampler": 45, "train": 120}
GOAL_ZERO_COPY = 0.85
GOAL_EPOCH_SPEEDUP = 1.3
#: losses of the placements agree within this relative difference (same data and model; the GPU
#: sums with float atomics in another order each run)
LOSS_RTOL = 2e-3


def _no_gpu_reason() -> str | None:
    """Why this machine cannot run the check, or ``None``."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return f"torch cannot be imported ({exc})"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
    return None


# ---------------------------------------------------------------------------------------------
# steps (each runs in a child process: python bench/gpu_check.py --step NAME)
# ---------------------------------------------------------------------------------------------
def step_versions(args) -> dict:
    import importlib.metadata as md

    import torch

    from gnnsys.features.cuda_versions import check_cuda_agreement

    def version(name: str):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    out = {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "numba": version("numba"), "torch_geometric": version("torch-geometric"),
           "scikit_learn": version("scikit-learn"), "tensorboard": version("tensorboard"),
           "pytest": version("pytest"), "ogb": version("ogb")}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(device=p.name, device_count=torch.cuda.device_count(),
                   compute_capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1))
    try:
        found = check_cuda_agreement()
        out["cupy"] = found.as_dict()["cupy"]
        out["cuda_agree"] = True
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out["cuda_agree"] = False
        out["cuda_agree_error"] = str(exc)
    try:
        import cupy

        out["cupy_runtime"] = int(cupy.cuda.runtime.runtimeGetVersion())
        out["driver"] = int(cupy.cuda.runtime.driverGetVersion())
    except Exception as exc:  # noqa: BLE001
        out["cupy_error"] = f"{type(exc).__name__}: {exc}"
    return out


def step_gpu_tests(args) -> dict:
    import xml.etree.ElementTree as ET

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        path = [str(REPO)]
        try:
            import pytest  # noqa: F401
        except ImportError:  # the carried wheels: pure Python, unzipped
            site = Path(tmp) / "site"
            for whl in sorted((REPO / "bench" / "wheels").glob("*.whl")):
                with zipfile.ZipFile(whl) as z:
                    z.extractall(site)
            path.append(str(site))
        env["PYTHONPATH"] = os.pathsep.join(path + [env.get("PYTHONPATH", "")])
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               f"--junitxml={xml}", "tests/test_gpu.py"]
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=STEP_S["gpu_tests"] - 10)
        out = {"command": " ".join(cmd[1:]), "exit_code": res.returncode,
               "tail": (res.stdout + res.stderr).strip().splitlines()[-3:]}
        if xml.is_file():
            root = ET.parse(xml).getroot()
            suite = root if root.tag == "testsuite" else root.find("testsuite")
            out.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
            out["failed"] = [
                {"test": case.get("name"), "reason": (bad.get("message") or "").splitlines()[0][:300]}
                for case in suite.iter("testcase")
                for bad in list(case.findall("failure")) + list(case.findall("error"))]
            out["skipped_tests"] = [
                {"test": case.get("name"), "reason": (s.get("message") or "")[:200]}
                for case in suite.iter("testcase") for s in case.findall("skipped")]
        out["ok"] = res.returncode == 0
        return out


def _cuda_median(fn, repeat: int) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def step_gather(args) -> dict:
    """GB/s of gathered bytes; every method checked equal to NumPy fancy indexing first. Timed
    with CUDA events on the current stream after waiting on each gather (median of interleaved
    repeats); the CPU gather + copy includes the numba gather into pinned buffers."""
    import numpy as np
    import torch

    from gnnsys.features import FeatureStore

    rows, n_ids, repeat = args.rows, args.ids, args.repeat
    out = {"rows": rows, "ids": n_ids, "dim": 100, "repeat": repeat}
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float16"):
        table = rng.standard_normal((rows, 100), dtype=np.float32).astype(dtype)
        ids = rng.integers(0, rows, n_ids, dtype=np.int64)
        expected = torch.from_numpy(table[ids])
        nbytes = expected.numel() * expected.element_size()
        pinned = torch.empty_like(expected).pin_memory()
        pinned.copy_(expected)
        dst = torch.empty(expected.shape, dtype=expected.dtype, device="cuda")
        res: dict[str, float] = {}
        t0 = time.perf_counter()
        with FeatureStore(table, placement="uva") as uva, \
                FeatureStore(table, placement="cpu", device="cuda", num_buffers=4) as cpu_copy, \
                FeatureStore(table, placement="gpu") as resident:
            build_s = time.perf_counter() - t0
            for name, st in (("uva", uva), ("cpu_gather_copy", cpu_copy), ("gpu_resident", resident)):
                assert torch.equal(st.gather(ids).cpu(), expected), name
            fns = {"h2d_memcpy": lambda: dst.copy_(pinned, non_blocking=True),
                   "uva": lambda: uva.gather(ids),
                   "cpu_gather_copy": lambda: cpu_copy.gather(ids),
                   "gpu_resident": lambda: resident.gather(ids)}
            samples: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(repeat):  # interleaved rounds
                for k, fn in fns.items():
                    samples[k].append(_cuda_median(fn, 1))
            res = {k: round(nbytes / statistics.median(v) / 1e9, 3) for k, v in samples.items()}
            res["ranges_gbps"] = {k: [round(nbytes / max(v) / 1e9, 3), round(nbytes / min(v) / 1e9, 3)]
                                  for k, v in samples.items()}
            res["uva_plan"] = uva._backend.pin_plan.mode
        res["store_build_seconds"] = round(build_s, 2)
        res["zero_copy_vs_memcpy"] = round(res["uva"] / res["h2d_memcpy"], 3)
        res["zero_copy_vs_cpu_gather_copy"] = round(res["uva"] / res["cpu_gather_copy"], 3)
        out[dtype] = res
    out["zero_copy_vs_memcpy"] = out["float32"]["zero_copy_vs_memcpy"]
    out["goal_zero_copy_met"] = out["zero_copy_vs_memcpy"] >= GOAL_ZERO_COPY
    try:
        out["int8"] = _gather_int8(rows, n_ids, repeat)
    except Exception as exc:  # noqa: BLE001 - reported, the float results above are kept
        out["int8"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    out["ok"] = out["int8"]["ok"]
    return out


def _gather_int8(rows: int, n_ids: int, repeat: int) -> dict:
    """An int8 table (random codes and scales, D = 100) on ``uva`` against the CPU int8 gather +
    copy and against ``uva`` over its dequantised float32 table: all equal bit for bit, then the
    median ms per gather of interleaved rounds. Bytes moved over PCIe per row: 100 codes for int8
    ``uva`` (its scales are on the device), 400 B for float32 ``uva`` and for the CPU path."""
    import numpy as np
    import torch

    from gnnsys.features import FeatureStore

    rng = np.random.default_rng(1)
    q = rng.integers(-127, 128, (rows, 100), dtype=np.int8)
    s = rng.random(rows, dtype=np.float32)
    ids = rng.integers(0, rows, n_ids, dtype=np.int64)
    x = q.astype(np.float32) * s[:, None]  # the dequantised table: the same rows as float32
    with FeatureStore(q, placement="uva", dtype="int8", scales=s) as uva, \
            FeatureStore(q, placement="cpu", device="cuda", dtype="int8", scales=s) as cpu_copy, \
            FeatureStore(x, placement="uva") as uva32:
        a = uva.gather(ids)
        assert a.dtype == torch.float32
        for other in (cpu_copy, uva32):
            assert torch.equal(a.view(torch.int32), other.gather(ids).view(torch.int32))
        fns = {"uva": lambda: uva.gather(ids), "cpu_gather_copy": lambda: cpu_copy.gather(ids),
               "uva_float32": lambda: uva32.gather(ids)}
        samples: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeat):
            for k, fn in fns.items():
                samples[k].append(_cuda_median(fn, 1))
    ms = {k: round(1e3 * statistics.median(v), 3) for k, v in samples.items()}
    return {"ms_per_gather": ms, "ranges_ms": {k: [round(1e3 * min(v), 3), round(1e3 * max(v), 3)]
                                               for k, v in samples.items()},
            "uva_vs_cpu_gather_copy": round(ms["cpu_gather_copy"] / ms["uva"], 3),
            "uva_vs_uva_float32": round(ms["uva_float32"] / ms["uva"], 3), "ok": True}


def _dataset(root: Path, scale: float):
    from gnnsys.data import synthetic

    path = root / f"products-1m-x{scale}"
    if path.is_dir():
        from gnnsys.data import load_dataset

        return load_dataset(path)
    return synthetic.generate("products-1m", path, seed=0, scale=scale)


def step_dataset(args) -> dict:
    """Generate the products-like subset (products-1m's preset at ``--scale``) for the next steps."""
    ds = _dataset(Path(args.work), args.scale)
    return {"path": str(ds.path), "nodes": ds.num_nodes, "edges": int(ds.graph.indices.size),
            "dim": int(ds.features.shape[1]), "ok": True}


def step_sampler(args) -> dict:
    import numpy as np
    import torch

    from gnnsys.loader.gpu_sampler import GpuNeighborSampler
    from samplers import NeighborSampler

    ds = _dataset(Path(args.work), args.scale)
    fanouts = [15, 10, 5]
    t0 = time.perf_counter()
    gpu = GpuNeighborSampler(ds.graph, fanouts, seed=0)
    build_s = time.perf_counter() - t0
    cpu = NeighborSampler(ds.graph, fanouts, seed=0)
    seeds = np.asarray(ds.splits["train"])
    batches = [seeds[i * 1024:(i + 1) * 1024] for i in range(min(20, seeds.size // 1024))]
    a = gpu.sample_from_nodes(batches[0], batch_seed=0)  # warm-up (numba, kernels)
    b = cpu.sample_from_nodes(batches[0], batch_seed=0)
    same = np.array_equal(a.nodes, b.nodes) and all(
        np.array_equal(x.edge_index, y.edge_index) for x, y in zip(a.hops, b.hops))
    times = {"gpu": [], "cpu": []}
    for i, s in enumerate(batches):  # interleaved
        for name, smp in (("gpu", gpu), ("cpu", cpu)):
            t = time.perf_counter()
            sub = smp.sample_from_nodes(s, batch_seed=i)
            times[name].append(time.perf_counter() - t)
            if name == "gpu":
                ref = cpu.sample_from_nodes(s, batch_seed=i)
                same = same and np.array_equal(sub.nodes, ref.nodes)
    gpu.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    import numba

    return {"nodes": ds.num_nodes, "edges": int(ds.graph.indices.size), "batch": 1024, "fanouts": fanouts,
            "batches": len(batches), "same_samples": bool(same), "gpu_build_seconds": round(build_s, 2),
            "gpu_ms_per_batch": round(med["gpu"] * 1e3, 2), "cpu_ms_per_batch": round(med["cpu"] * 1e3, 2),
            "cpu_threads": numba.get_num_threads(), "gpu_speedup": round(med["cpu"] / med["gpu"], 3),
            "device": torch.cuda.get_device_name(), "ok": bool(same)}


def step_train(args) -> dict:
    from gnnsys.train import TrainConfig, train

    ds = _dataset(Path(args.work), args.scale)
    runs = {"uva": {"features": "uva"}, "gpu": {"features": "gpu"},
            "cpu": {"features": "cpu", "model_options": {"aggregate_first_hop": False}},
            "cpu_first_hop_in_gather": {"features": "cpu"}}
    out: dict = {"nodes": ds.num_nodes, "epochs": 2, "batch_size": 1024, "max_batches": args.max_batches}
    for name, kw in runs.items():
        try:
            t0 = time.perf_counter()
            cfg = TrainConfig(dataset=str(ds.path), device="cuda", epochs=2, eval_every=0,
                              batch_size=1024, max_batches=args.max_batches, progress=False, seed=0,
                              out=str(Path(args.work) / f"run-{name}"), **kw)
            s = train(cfg, overwrite=True)
            hist = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
            out[name] = {"losses": [round(h["loss"], 6) for h in hist],
                         "epoch_seconds": [round(h["time_epoch"], 3) for h in hist],
                         "seconds": round(time.perf_counter() - t0, 2)}
        except Exception as exc:  # noqa: BLE001 - reported, the others still run
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    good = {k: v for k, v in out.items() if isinstance(v, dict) and "losses" in v}
    if "uva" in good:
        ref = good["uva"]["losses"][-1]
        out["losses_agree"] = all(abs(v["losses"][-1] - ref) <= LOSS_RTOL * abs(ref) for v in good.values())
    if "uva" in good and "cpu" in good:
        # the second epoch: the first one also pays for compiling and warming the caches
        out["uva_epoch_speedup_vs_cpu"] = round(good["cpu"]["epoch_seconds"][-1] / good["uva"]["epoch_seconds"][-1], 3)
        out["goal_epoch_met"] = out["uva_epoch_speedup_vs_cpu"] >= GOAL_EPOCH_SPEEDUP
    out["ok"] = len(good) == len(runs) and bool(out.get("losses_agree"))
    return out


STEPS = {"versions": step_versions, "gpu_tests": step_gpu_tests, "gather": step_gather,
         "dataset": step_dataset, "sampler": step_sampler, "train": step_train}


def run_step(name: str, args) -> int:
    """Child process: run one step, print its result as the last line."""
    t0 = time.perf_counter()
    try:
        result = STEPS[name](args)
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:800],
                  "where": traceback.format_exc().strip().splitlines()[-3:]}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(result, default=str), flush=True)
    return 0


def parent(args) -> int:
    start = time.perf_counter()
    summary: dict = {"check": "gpu", "command": " ".join(["bench/gpu_check.sh", *sys.argv[1:]]),
                     "steps": {}}
    names = ["versions"] if args.dry_run else (args.only.split(",") if args.only else list(STEPS))
    with tempfile.TemporaryDirectory(prefix="gnnsys-gpu-check-") as work:
        for name in names:
            left = TOTAL_S - (time.perf_counter() - start)
            limit = min(STEP_S[name], left - 5)
            if limit < 10:
                summary["steps"][name] = {"ok": False, "error": "skipped: the 6-minute budget is spent"}
                continue
            cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--work", work,
                   "--rows", str(args.rows), "--ids", str(args.ids), "--repeat", str(args.repeat),
                   "--scale", str(args.scale), "--max-batches", str(args.max_batches)]
            t0 = time.perf_counter()
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=REPO)
                lines = res.stdout.strip().splitlines()
                try:
                    result = json.loads(lines[-1])
                except (IndexError, json.JSONDecodeError):
                    result = {"ok": False, "error": f"exit code {res.returncode} without a result",
                              "stderr": res.stderr.strip().splitlines()[-5:]}
            except subprocess.TimeoutExpired:
                result = {"ok": False, "error": f"timed out after {limit:.0f} s"}
            result.setdefault("seconds", round(time.perf_counter() - t0, 2))
            summary["steps"][name] = result
            print(f"[{name}] {'ok' if result.get('ok', True) else 'FAILED'} in {result['seconds']} s: "
                  + json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))})[:400],
                  flush=True)
    gather = summary["steps"].get("gather", {})
    train = summary["steps"].get("train", {})
    summary["goals"] = {
        "zero_copy_vs_memcpy": {"value": gather.get("zero_copy_vs_memcpy"), "goal": GOAL_ZERO_COPY,
                                "met": gather.get("goal_zero_copy_met")},
        "uva_epoch_speedup_vs_cpu": {"value": train.get("uva_epoch_speedup_vs_cpu"),
                                     "goal": GOAL_EPOCH_SPEEDUP, "met": train.get("goal_epoch_met")},
    }
    summary["ok"] = all(s.get("ok", True) for s in summary["steps"].values())
    summary["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(summary, default=str))
    return 0 if summary["ok"] else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="versions and CUDA agreement only")
    ap.add_argument("--step", choices=list(STEPS), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    # tests: run the parent without a GPU (every GPU step then fails and must be reported)
    ap.add_argument("--without-gpu", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--only", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, default=2_000_000, help="gather: table rows (D = 100)")
    ap.add_argument("--ids", type=int, default=500_000, help="gather: ids per gather")
    ap.add_argument("--repeat", type=int, default=7, help="gather: interleaved rounds")
    ap.add_argument("--scale", type=float, default=0.5, help="products-1m scale of the subset")
    ap.add_argument("--max-batches", type=int, default=60, help="train: batches per epoch")
    args = ap.parse_args()
    if args.step:
        return run_step(args.step, args)
    reason = _no_gpu_reason()
    if reason is not None and not args.without_gpu:
        print(f"gpu_check: no CUDA GPU on this machine ({reason}); nothing to check", file=sys.stderr)
        return 1
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
