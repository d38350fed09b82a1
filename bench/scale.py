"""How cost grows with size: papers100m-like at scales 0.01 and 0.1 (float16 and int8 tables).

Per scale and dtype, each stage runs in its own child process (so that its peak RSS is its own):

* preparation (``gnnsys.data.synthetic.generate``, out of core): wall time and peak RSS of every
  stage (``VmHWM`` reset per stage), total time, files on disk;
* training (GraphSAGE, fanouts 15,10,5, batch 1024, Adam, the library's NodeLoader with one
  prefetching worker): seeds/s over the timed batches after ``--warmup`` batches, the gather's
  share of the loop's wall time, the RAM hot-row cache's hit rate (``--features mmap
  --cache-gb``), the peak RSS while training (``VmHWM`` reset after setup: it counts mapped file
  pages, i.e. page cache) and its anonymous part alone (polled after every batch), major page
  faults and bytes read from disk per timed batch, and the page-cache advice applied to the mapped
  graph and table (``--madvise auto``: the library's rule, :mod:`gnnsys.data.advice`);
* with ``--memory-limit-gb X``, each papers100m-like training child runs in a memory cgroup of
  ``X`` GiB (its dataset evicted from the page cache first, so that the cgroup is charged for
  what it reads): the regime of a scale whose maps the page cache cannot hold, at a scale that
  prepares in minutes (the library reads the cgroup's limit: :mod:`gnnsys.data.memory`);
* the reference: the same training loop on products-like (2.4M nodes, 62M edges, float32) held
  fully in RAM (``--features cpu``), in the same run.

Scale 1 (111M nodes, 1.6B edges) is opt-in: it needs about 70 GB of free disk (float16; 56 GB
int8) and about 45 minutes of preparation per dtype on 2 idle cores (docs/scale.md has the figures).

    python bench/scale.py --quick              # scale 0.01 only (+ the products-like reference)
    python bench/scale.py                      # scales 0.01 and 0.1
    python bench/scale.py --scales 0.01,0.1,1 --dtypes int8   # up to the full size
    python bench/scale.py --data /tmp/x        # where datasets are prepared (reused if present)
    python bench/scale.py --scales 0.1 --dtypes int8 --memory-limit-gb 3   # scale 1's regime at 0.1

Last line: one JSON object ``{"bench": "scale", "scales": {...}, "reference": {...}, ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchlib import evict_from_page_cache

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# children


def child_prep(args) -> dict:
    from gnnsys.data.synthetic import generate

    stats: dict = {}
    t = time.perf_counter()
    ds = generate(args.preset, args.out, scale=args.scale, feature_dtype=args.dtype, overwrite=True,
                  stats=stats)
    wall = time.perf_counter() - t
    disk = sum(f["bytes"] for f in ds.meta["files"].values())
    peak = max(r["peak_rss_bytes"] for r in stats["stages"].values())
    return {"seconds": round(wall, 2), "peak_rss_bytes": peak, "disk_bytes": disk,
            "disk_estimate_bytes": stats["disk_estimate_bytes"], "num_nodes": ds.num_nodes,
            "num_edges": ds.num_edges, "stages": stats["stages"]}


def _major_faults() -> int:
    """Major page faults of this process so far (all threads; field 12 of /proc/self/stat)."""
    with open("/proc/self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[9])


def _read_bytes() -> int:
    """Bytes this process caused to be read from storage (``read_bytes`` of /proc/self/io)."""
    with open("/proc/self/io") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("read_bytes:"))


def child_train(args) -> dict:
    import numpy as np
    import torch
    from torch.nn import functional as F

    from gnnsys.data.format import load_dataset
    from gnnsys.data.readahead import resident_bytes
    from gnnsys.data.stages import peak_rss_bytes, reset_peak_rss
    from gnnsys.features.factory import dataset_store
    from gnnsys.loader import NodeLoader
    from gnnsys.models import GraphSAGE
    from samplers import NeighborSampler

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ds = load_dataset(args.dataset, validate="quick")
    sampler = NeighborSampler(ds.graph, [15, 10, 5], seed=0)
    store = dataset_store(ds, args.features, num_buffers=4,
                          cache_gb=args.cache_gb if args.features == "mmap" else None)
    # page-cache advice on the maps batches read at random, after setup's sequential reads (graph
    # check, RAM cache): the library's rule (what `gnnsys train` applies), or forced
    # (--madvise auto --readahead auto is what advise_page_cache does for `gnnsys train`)
    from gnnsys.data.advice import advise, advise_random_reads
    from gnnsys.features.factory import attach_readahead, page_cache_plan

    mapped = store.host_table if store.placement == "mmap" else None
    reads = plan = None
    if args.madvise == "auto" and args.readahead == "auto":  # the library's own call, recheck included
        plan = page_cache_plan(ds, store, sampler)
        advice = plan.advice
    else:
        if args.madvise == "auto":
            advice = advise_random_reads(ds.indices, mapped)
        else:
            advice = args.madvise
            for arr in (ds.indices, mapped):
                advise(arr, advice)
        # deep-queue reads of the rows and neighbour lists, and the bound on mapped pages
        # (gnnsys.data.readahead), forced on or off
        if args.readahead in ("on", "lists") or (args.readahead == "auto" and advice == "random"):
            reads = attach_readahead(ds, store, sampler, read_rows=args.readahead != "lists")
    model = GraphSAGE(store.dim, 256, int(ds.num_classes), num_layers=3, dropout=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    loader = NodeLoader(sampler, np.asarray(ds.splits["train"]), 1024, features=store,
                        labels=ds.labels, shuffle=True, prefetch=1)
    setup = time.perf_counter() - t0
    setup_peak = peak_rss_bytes()
    reset_peak_rss()
    model.train()
    it = iter(loader)
    gather = sample = 0.0
    seeds = 0
    t_start = None
    anon_peak = resident_bytes()[0]
    for i in range(args.warmup + args.batches):
        if i == args.warmup:
            store.reset_hit_rate()
            gather = sample = 0.0
            seeds = 0
            t_start = time.perf_counter()
            faults0, read0 = _major_faults(), _read_bytes()
        try:
            batch = next(it)
        except StopIteration:  # a small train split: start another epoch
            it = iter(loader)
            batch = next(it)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(batch), batch.y)
        loss.backward()
        opt.step()
        anon_peak = max(anon_peak, resident_bytes()[0])
        if i >= args.warmup:
            gather += float(batch.timings.get("gather", 0.0))
            sample += float(batch.timings.get("sample", 0.0))
            seeds += int(batch.batch_size)
        del batch
    wall = time.perf_counter() - t_start
    faults, read = _major_faults() - faults0, _read_bytes() - read0
    hit = store.reset_hit_rate()
    anon_end, file_end = resident_bytes()
    close = getattr(it, "close", None)
    if close is not None:
        close()
    return {"seeds_per_s": round(seeds / wall, 1), "timed_batches": args.batches,
            "warmup_batches": args.warmup, "wall_s": round(wall, 2),
            "gather_share": round(gather / wall, 3), "sample_share": round(sample / wall, 3),
            "hit_rate": None if hit is None else round(hit, 4),
            "peak_rss_training_bytes": peak_rss_bytes(), "peak_rss_setup_bytes": setup_peak,
            # VmHWM above counts mapped file pages (page cache, evictable); this is the anonymous
            # memory alone, polled after every batch
            "peak_rss_anon_training_bytes": anon_peak,
            # page faults that read the disk, per timed batch (mapped graph and feature table)
            "major_faults_per_batch": round(faults / args.batches, 1),
            "disk_read_bytes_per_batch": int(read / args.batches),
            # at the end of training: anonymous memory vs mapped file pages (evictable page cache)
            "rss_anon_end_bytes": anon_end, "rss_file_end_bytes": file_end,
            "setup_s": round(setup, 2), "features": args.features,
            "cache_gb": args.cache_gb if args.features == "mmap" else None,
            "table_bytes": int(ds.features.nbytes), "feature_dtype": ds.feature_dtype,
            "madvise": advice,
            "readahead": (plan.summary()["readahead"] if plan is not None
                          else None if reads is None else reads.summary()),
            **({} if plan is None else {"page_cache": plan.summary()})}


# ----------------------------------------------------------------------------------------------
# parent


def _memory_cgroup(limit_bytes: int) -> Path:
    """A new memory cgroup limited to ``limit_bytes`` (v1 memory controller, or v2 with the memory
    controller enabled below the root); raises ``OSError`` naming what is missing."""
    name = f"gnnsys-bench-scale-{os.getpid()}"
    v1 = Path("/sys/fs/cgroup/memory")
    if (v1 / "memory.limit_in_bytes").exists():
        group = v1 / name
        group.mkdir(exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
        return group
    v2 = Path("/sys/fs/cgroup")
    if "memory" in (v2 / "cgroup.subtree_control").read_text().split():
        group = v2 / name
        group.mkdir(exist_ok=True)
        (group / "memory.max").write_text(str(limit_bytes))
        return group
    raise OSError("no memory cgroup controller to limit the child (needs root and cgroup v1 "
                  "memory or v2 with +memory in /sys/fs/cgroup/cgroup.subtree_control)")


def _evict(folder: Path) -> None:
    """Drop the clean page-cache pages of every file under ``folder`` (so that a child in a memory
    cgroup reads them again, charged to its own limit)."""
    for f in folder.rglob("*"):
        if f.is_file():
            evict_from_page_cache(f)


def _run_child(argv: list[str], timeout: float, cgroup: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    if cgroup is not None:  # the child joins the cgroup before it starts Python
        cmd = ["bash", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "bash", *cmd]
    t = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "command": " ".join(cmd)}
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {res.returncode}: {' | '.join(tail)}", "command": " ".join(cmd)}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["child_wall_s"] = round(time.perf_counter() - t, 2)
    out["load_after"] = os.getloadavg()[0]
    return out


def _prepared(path: Path) -> bool:
    return (path / "meta.json").is_file()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="scale 0.01 only")
    ap.add_argument("--scales", default=None, help="comma-separated scales (default 0.01,0.1)")
    ap.add_argument("--dtypes", default="float16,int8")
    ap.add_argument("--data", default="/tmp/gnnsys-bench-scale", help="dataset folder (reused)")
    ap.add_argument("--reprepare", action="store_true", help="prepare again even if present")
    ap.add_argument("--batches", type=int, default=5, help="timed batches per training run")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--cache-fraction", type=float, default=0.25,
                    help="RAM cache as a fraction of the table (mmap runs)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reference", default="products-like", help="preset trained in RAM as the reference")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--child", choices=("prep", "train"))
    ap.add_argument("--preset"), ap.add_argument("--scale", type=float), ap.add_argument("--dtype")
    ap.add_argument("--out"), ap.add_argument("--dataset"), ap.add_argument("--features")
    ap.add_argument("--cache-gb", dest="cache_gb", type=float, default=None)
    ap.add_argument("--madvise", choices=("auto", "normal", "random"), default="auto",
                    help="page-cache advice on the mapped indices and feature table after setup "
                         "(auto: the library's rule, gnnsys.data.advice)")
    ap.add_argument("--memory-limit-gb", dest="memory_limit_gb", type=float, default=None,
                    help="run each papers100m-like training child in a memory cgroup of this "
                         "size, its dataset evicted from the page cache first: the out-of-core "
                         "regime of a larger scale, at a smaller one (needs root)")
    ap.add_argument("--readahead", choices=("auto", "on", "lists", "off"), default="auto",
                    help="read-ahead of rows and neighbour lists plus the bound on mapped pages "
                         "(auto: attached with the random advice, as the library does; lists: "
                         "the neighbour lists' and the bound, the rows left to page faults)")
    args = ap.parse_args()
    if args.child == "prep":
        print(json.dumps(child_prep(args)))
        return
    if args.child == "train":
        print(json.dumps(child_train(args)))
        return

    import numba
    import numpy as np
    import torch

    scales = [0.01] if args.quick else [float(s) for s in (args.scales or "0.01,0.1").split(",")]
    dtypes = args.dtypes.split(",")
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    threads = ["--threads", str(args.threads)] if args.threads else []
    common = ["--batches", str(args.batches), "--warmup", str(args.warmup), "--madvise", args.madvise,
              "--readahead", args.readahead, *threads]
    print(f"bench/scale.py: python {platform.python_version()}, numpy {np.__version__}, torch "
          f"{torch.__version__}, numba {numba.__version__}; torch threads {torch.get_num_threads()}, "
          f"numba threads {numba.get_num_threads()}; command: {' '.join(sys.argv)}", flush=True)
    result: dict = {"bench": "scale", "scales": {}, "reference": None,
                    "command": " ".join(sys.argv), "load_start": os.getloadavg()[0],
                    "memory_limit_gb": args.memory_limit_gb,
                    "cpus": os.cpu_count(), "fanouts": [15, 10, 5], "batch_size": 1024}
    # the reference: products-like in RAM
    ref_dir = data / args.reference
    ref_prep = None
    if args.reprepare or not _prepared(ref_dir):
        ref_prep = _run_child(["--child", "prep", "--preset", args.reference, "--scale", "1",
                               "--dtype", "float32", "--out", str(ref_dir)], args.timeout)
    ref = _run_child(["--child", "train", "--dataset", str(ref_dir), "--features", "cpu", *common],
                     args.timeout)
    result["reference"] = {"dataset": args.reference, "features": "cpu", "preparation": ref_prep,
                           "training": ref}
    print(f"reference {args.reference} in RAM: {ref.get('seeds_per_s')} seeds/s "
          f"(load {ref.get('load_after')})", flush=True)
    for scale in scales:
        per_dtype = {}
        for dtype in dtypes:
            d = data / f"papers100m-like-x{scale:g}-{dtype}"
            prep = None
            if args.reprepare or not _prepared(d):
                prep = _run_child(["--child", "prep", "--preset", "papers100m-like", "--scale", str(scale),
                                   "--dtype", dtype, "--out", str(d)], args.timeout)
                print(f"scale {scale:g} {dtype}: prepared in {prep.get('seconds')} s, peak RSS "
                      f"{prep.get('peak_rss_bytes', 0) / 2**30:.2f} GiB (load {prep.get('load_after')})",
                      flush=True)
            meta = json.loads((d / "meta.json").read_text()) if _prepared(d) else None
            table = meta["files"]["features.npy"]["bytes"] if meta else 0
            cache_gb = max(0.01, args.cache_fraction * table / 2**30)
            train_argv = ["--child", "train", "--dataset", str(d), "--features", "mmap",
                          "--cache-gb", f"{cache_gb:.3f}", *common]
            if args.memory_limit_gb is None:
                train = _run_child(train_argv, args.timeout)
            else:
                try:
                    group = _memory_cgroup(int(args.memory_limit_gb * 2**30))
                except OSError as e:
                    train = {"error": f"--memory-limit-gb: {e}"}
                else:
                    try:
                        _evict(d)
                        train = _run_child(train_argv, args.timeout, cgroup=group)
                    finally:
                        group.rmdir()
                train["memory_limit_bytes"] = int(args.memory_limit_gb * 2**30)
            ratio = (train.get("seeds_per_s") / ref["seeds_per_s"]
                     if train.get("seeds_per_s") and ref.get("seeds_per_s") else None)
            per_dtype[dtype] = {"preparation": prep, "training": train,
                                "throughput_vs_products_in_ram": None if ratio is None else round(ratio, 3)}
            print(f"scale {scale:g} {dtype}: {train.get('seeds_per_s')} seeds/s (x{ratio} of products "
                  f"in RAM), gather share {train.get('gather_share')}, hit rate {train.get('hit_rate')}, "
                  f"peak RSS training {train.get('peak_rss_training_bytes', 0) / 2**30:.2f} GiB "
                  f"(anonymous {train.get('peak_rss_anon_training_bytes', 0) / 2**30:.2f} GiB), "
                  f"disk read per batch {train.get('disk_read_bytes_per_batch', 0) / 2**20:.0f} MiB, "
                  f"madvise {train.get('madvise')}, readahead {train.get('readahead')}, "
                  f"page cache {train.get('page_cache')} "
                  f"(load {train.get('load_after')})", flush=True)
        result["scales"][f"{scale:g}"] = per_dtype
    result["load_end"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
