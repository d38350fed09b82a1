"""Benchmark: node embeddings, ours (gnnsys.embedding) vs gensim Word2Vec on the same walks
(DeepWalk's recipe) vs PecanPy, in wall time and quality.

Same hyperparameters on every side: dim 128, walk length 80, 10 walks per node, window 10, 5
negatives, 1 epoch, word2vec's defaults otherwise (lr 0.025 decayed linearly, subsampling 1e-3,
min_count 0), the same number of threads.

* speed: a random graph (``--nodes``, average degree ``--degree``; quick: 3,000 nodes, full:
  1,000,000 nodes, 5M edges as GraphVite's figure). Each system runs in its own process, the
  systems interleaved round-robin for ``--repeats`` rounds; each process first warms up on a
  tiny graph (numba compilation timed apart) and reports its wall time to the end of training,
  walk nodes per second and its memory (PSS / USS of ``/proc/self/smaps_rollup``) at the end.
  gensim's wall time counts our parallel walk generation, the walks' conversion to token lists
  and ``Word2Vec`` (vocabulary and training); its training alone is reported too. PecanPy runs
  ``FirstOrderUnweighted`` (its mode for p = q = 1) ``simulate_walks`` + ``Word2Vec`` as its
  ``embed`` does, reading the edge list first (reported apart).
* quality: linear-probe micro/macro-F1 (scikit-learn logistic regression on the public split)
  on Cora and CiteSeer, ours against gensim on the *same* walks and against PecanPy, over
  ``--seeds`` seeds (mean and standard deviation); ogbl-ddi test Hits@20 (OGB's Evaluator) of
  our node2vec embeddings (OGB's node2vec.py settings: walk length 40, context 20), by dot
  product and by OGB's protocol (``ddi/mlp.py``: an MLP link predictor on the frozen embeddings,
  ``--mlp-epochs`` epochs, test at the best valid; :mod:`gnnsys.embedding.link_probe`).

PecanPy needs numpy < 2 (its nptyping dependency) while this environment has numpy 2, so it
runs from its own virtual environment: ``--pecanpy-python /path/to/venv/bin/python`` (made with
``python -m venv V && V/bin/pip install pecanpy``); without it, or when it fails, its fields are
``null`` with the reason.

    python bench/embedding.py --quick --pecanpy-python /tmp/venv-pecanpy/bin/python
    python bench/embedding.py                         # 1M-node speed graph, ddi: long

The last line is one JSON object: ``{"bench": "embedding", "ratio_vs_gensim": ..., ...}``
(ratios of wall-time medians, peer / ours).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIM, WALK_LENGTH, WALKS, WINDOW, NEG = 128, 80, 10, 10, 5


# ------------------------------------------------------------------------------------ helpers
def memory() -> dict[str, int]:
    """PSS and USS (private clean + dirty) of this process in bytes."""
    out = {"pss": 0, "uss": 0}
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            k, _, rest = line.partition(":")
            if k == "Pss":
                out["pss"] = int(rest.split()[0]) * 1024
            elif k in ("Private_Clean", "Private_Dirty"):
                out["uss"] += int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def random_graph(n: int, degree: float, seed: int, path: Path) -> None:
    """An undirected graph with ``n * degree / 2`` edges, endpoints drawn with probability
    ~ a Zipf-like weight (heavy-tailed degrees), saved as an ``.npz`` of CSC arrays and a
    tab-separated edge list (PecanPy's input)."""
    sys.path.insert(0, str(REPO))
    from gnnsys.data.csc import build_csc

    rng = np.random.default_rng(seed)
    m = int(n * degree / 2)
    w = 1.0 / np.arange(1, n + 1) ** 0.5
    w /= w.sum()
    src = rng.choice(n, size=m, p=w)
    dst = rng.integers(0, n, size=m)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    g = build_csc(src, dst, n, symmetrize=True, drop_duplicates=True, drop_self_loops=True, track_edge_ids=False)
    np.savez(path.with_suffix(".npz"), indptr=g.indptr, indices=g.indices)
    # the edge list of the deduplicated undirected graph, each edge once
    dst_of = np.repeat(np.arange(n), np.diff(g.indptr))
    once = g.indices < dst_of
    np.savetxt(path.with_suffix(".edg"), np.stack([g.indices[once], dst_of[once]], 1), fmt="%d",
               delimiter="\t")


def load_graph(path: Path) -> tuple[np.ndarray, np.ndarray]:
    z = np.load(path.with_suffix(".npz"))
    return z["indptr"], z["indices"]


# ------------------------------------------------------------------------------------ workers
def worker_ours(graph: Path, threads: int, seed: int, out: Path | None, walks: int = WALKS) -> dict:
    import numba

    from gnnsys.embedding.trainer import EmbeddingOptions, fit_embeddings

    numba.set_num_threads(threads)
    indptr, indices = load_graph(graph)
    t = time.perf_counter()  # warm-up: load the cached numba kernels (compiled once per machine)
    ring = np.arange(8)
    fit_embeddings(np.arange(0, 17, 2, dtype=np.int64), np.stack([(ring - 1) % 8, (ring + 1) % 8], 1)
                   .ravel().astype(np.int32), EmbeddingOptions(dim=8, walk_length=5, context=2, walks_per_node=1))
    warm = time.perf_counter() - t
    opts = EmbeddingOptions(dim=DIM, walk_length=WALK_LENGTH, context=WINDOW, walks_per_node=walks,
                            num_neg=NEG, seed=seed)
    t = time.perf_counter()
    emb, stats = fit_embeddings(indptr, indices, opts, num_threads=threads)
    wall = time.perf_counter() - t
    if out is not None:
        np.save(out, emb)
    return {"wall_s": wall, "warmup_s": warm, "samples": stats["samples"],
            "samples_per_s": stats["samples"] / wall, **memory()}


def _walk_tokens(indptr, indices, seed: int, walks: int = WALKS) -> list[list[str]]:
    from types import SimpleNamespace

    from samplers.walks import random_walks, walk_order

    n = indptr.shape[0] - 1
    # exactly the walks our trainer makes online in its first epoch: pass k starts from the
    # permutation walk_order(n, 1, seed, k), walk ids in that order
    starts = np.concatenate([walk_order(n, 1, seed, k) for k in range(walks)])
    made = random_walks(SimpleNamespace(indptr=indptr, indices=indices), starts, WALK_LENGTH, seed=seed)
    return [[str(x) for x in w if x >= 0] for w in made.tolist()]


def worker_gensim(graph: Path, threads: int, seed: int, out: Path | None, walks: int = WALKS) -> dict:
    import numba
    from gensim.models import Word2Vec

    numba.set_num_threads(threads)
    indptr, indices = load_graph(graph)
    n = indptr.shape[0] - 1
    t = time.perf_counter()
    sentences = _walk_tokens(indptr, indices, seed, walks)
    t_walks = time.perf_counter() - t
    t1 = time.perf_counter()
    model = Word2Vec(sentences, vector_size=DIM, window=WINDOW, sg=1, hs=0, negative=NEG, min_count=0,
                     workers=threads, epochs=1, seed=seed)
    t_train = time.perf_counter() - t1
    wall = time.perf_counter() - t
    if out is not None:
        emb = np.zeros((n, DIM), np.float32)
        for i in range(n):
            k = model.wv.key_to_index.get(str(i))
            if k is not None:
                emb[i] = model.wv.vectors[k]
        np.save(out, emb)
    return {"wall_s": wall, "walks_and_tokens_s": t_walks, "word2vec_s": t_train, **memory()}


PECANPY_WORKER = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from pecanpy import pecanpy as pp
from gensim.models import Word2Vec
edg, threads, seed, out, tiny, walks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
def mem():
    o = {"pss": 0, "uss": 0}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        k, _, r = line.partition(":")
        if k == "Pss": o["pss"] = int(r.split()[0]) * 1024
        elif k in ("Private_Clean", "Private_Dirty"): o["uss"] += int(r.split()[0]) * 1024
    return o
def run(path, dim, wl, nw, win):
    t = time.perf_counter()
    g = pp.FirstOrderUnweighted(p=1, q=1, workers=threads, verbose=False, random_state=seed)
    g.read_edg(path, weighted=False, directed=False)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    walks = g.simulate_walks(num_walks=nw, walk_length=wl)
    t_walks = time.perf_counter() - t
    m = Word2Vec(walks, vector_size=dim, window=win, sg=1, min_count=0, workers=threads, epochs=1, seed=seed)
    return g, m, t_load, t_walks, time.perf_counter() - t
t = time.perf_counter(); run(tiny, 8, 5, 1, 2); warm = time.perf_counter() - t
g, m, t_load, t_walks, wall = run(edg, 128, 80, walks, 10)
if out != "-":
    ids = g.nodes
    n = max(int(x) for x in ids) + 1
    emb = np.zeros((n, 128), np.float32)
    for x in ids:
        emb[int(x)] = m.wv[x]
    np.save(out, emb)
print(json.dumps({"wall_s": wall, "read_edg_s": t_load, "walks_s": t_walks, "warmup_s": warm, **mem()}))
"""


def run_pecanpy(python: str | None, graph: Path, threads: int, seed: int, out: Path | None,
                tmp: Path, walks: int = WALKS) -> dict:
    if not python:
        return {"error": "no --pecanpy-python given (PecanPy needs numpy < 2: install it in its own venv)"}
    script = tmp / "pecanpy_worker.py"
    script.write_text(PECANPY_WORKER)
    tiny = tmp / "tiny.edg"
    if not tiny.exists():
        tiny.write_text("".join(f"{i}\t{(i + 1) % 8}\n" for i in range(8)))
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    env.pop("PYTHONPATH", None)
    res = subprocess.run([python, str(script), str(graph.with_suffix(".edg")), str(threads), str(seed),
                          str(out) if out else "-", str(tiny), str(walks)], capture_output=True, text=True, env=env,
                         check=False)
    if res.returncode != 0:
        return {"error": f"pecanpy failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_worker(system: str, graph: Path, threads: int, seed: int, out: Path | None,
               walks: int = WALKS) -> dict:
    """Run ``system`` in a fresh process of this interpreter; its JSON result."""
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, __file__, "--worker", system, "--graph", str(graph), "--threads",
                          str(threads), "--seed", str(seed), "--emb-out", str(out) if out else "-",
                          "--walks-per-node", str(walks)],
                         capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        return {"error": f"{system} failed: {res.stderr.strip()[-400:]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ quality
def planetoid(name: str, data: Path, tmp: Path):
    from gnnsys.data.sources import from_planetoid

    root = tmp / "planetoid"
    if not root.exists():
        shutil.copytree(data / "planetoid", root)
    return from_planetoid(name, root, tmp / f"ds-{name}")


def dataset_graph(ds, tmp: Path) -> Path:
    """The dataset's graph as the workers' files (npz + edge list)."""
    path = tmp / f"graph-{ds.name}"
    indptr, indices = np.asarray(ds.indptr), np.asarray(ds.indices)
    np.savez(path.with_suffix(".npz"), indptr=indptr, indices=indices)
    dst_of = np.repeat(np.arange(ds.num_nodes), np.diff(indptr))
    once = indices < dst_of
    np.savetxt(path.with_suffix(".edg"), np.stack([indices[once], dst_of[once]], 1), fmt="%d", delimiter="\t")
    return path


def quality(ds, graph: Path, args, tmp: Path) -> dict:
    from gnnsys.embedding.evaluate import linear_probe

    labels = np.asarray(ds.labels)
    scores: dict[str, list[dict]] = {"ours": [], "gensim": [], "pecanpy": []}
    errors: dict[str, str] = {}
    for seed in range(args.seeds):
        for system in ("ours", "gensim", "pecanpy"):
            out = tmp / f"emb-{system}-{ds.name}-{seed}.npy"
            if system == "pecanpy":
                r = run_pecanpy(args.pecanpy_python, graph, args.threads, seed, out, tmp)
            else:
                r = run_worker(system, graph, args.threads, seed, out)
            if "error" in r:
                errors[system] = r["error"]
                continue
            emb = np.load(out)
            if emb.shape[0] < ds.num_nodes:  # PecanPy omits trailing isolated nodes
                emb = np.concatenate([emb, np.zeros((ds.num_nodes - emb.shape[0], emb.shape[1]), np.float32)])
            s = linear_probe(emb, labels, ds.splits, seed=0)
            scores[system].append({"micro": s["test_f1-micro"], "macro": s["test_f1-macro"], "wall_s": r["wall_s"]})
            out.unlink()
    res: dict = {}
    for system, rows in scores.items():
        if not rows:
            res[system] = None
            res[f"{system}_reason"] = errors.get(system, "not run")
            continue
        mi = [r["micro"] for r in rows]
        ma = [r["macro"] for r in rows]
        res[system] = {"micro_f1_mean": statistics.mean(mi), "micro_f1_std": statistics.pstdev(mi),
                       "macro_f1_mean": statistics.mean(ma), "micro_f1": mi, "macro_f1": ma,
                       "wall_s": [r["wall_s"] for r in rows]}
    return res


def ddi_quality(args, tmp: Path) -> dict:
    """OGB's leaderboard protocol for Node2Vec on ogbl-ddi: the embedding settings of OGB's
    ``ddi/node2vec.py`` that are options here (dim 128, walk length 40, context 20, 10 walks per
    node, p = q = 1), then its ``ddi/mlp.py`` on the frozen embeddings (gnnsys.embedding.link_probe:
    3 layers, 256 hidden, dropout 0.5, batch 65,536, Adam 0.01, evaluated every 5 epochs, test at
    the best valid), ``--mlp-epochs`` epochs (OGB: 200)."""
    from gnnsys.data.sources import from_ogb
    from gnnsys.embedding.evaluate import link_scores
    from gnnsys.embedding.link_probe import LinkProbeOptions, link_probe
    from gnnsys.embedding.trainer import EmbeddingOptions, fit_embeddings

    root = tmp / "ogb"
    if not root.exists():
        shutil.copytree(args.data / "ogb", root)
    ds = from_ogb("ogbl-ddi", root, tmp / "ds-ddi")
    t = time.perf_counter()
    emb, _ = fit_embeddings(ds.indptr, ds.indices, EmbeddingOptions(
        model="node2vec", dim=128, walk_length=40, context=20, walks_per_node=10, num_neg=NEG, seed=0),
        num_threads=args.threads)
    train_s = time.perf_counter() - t
    direct = link_scores(emb, ds, "hits@20")
    probe = link_probe(emb, ds, "hits@20", LinkProbeOptions(epochs=args.mlp_epochs, seed=0),
                       num_threads=args.threads)
    return {"embedding_train_s": train_s, "dot_product": direct,
            "mlp": {k: v for k, v in probe.items() if k.startswith(("valid_", "test_"))},
            "mlp_best_epoch": probe.get("best_epoch"), "mlp_epochs": args.mlp_epochs, "mlp_s": probe["seconds"],
            "leaderboard_node2vec_test_hits@20": 0.2326}


# ------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 3,000-node speed graph, Cora only, 1 seed, no ddi")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, help="interleaved speed rounds (default 3 quick, 5 full)")
    ap.add_argument("--nodes", type=int, help="speed graph nodes (default 3,000 quick, 1,000,000 full)")
    ap.add_argument("--degree", type=float, default=10.0, help="speed graph average degree")
    ap.add_argument("--walks-per-node", type=int, default=WALKS,
                    help="speed runs: walks from every node (default 10, the recipe's; 1 scales a 1M-node "
                         "run down to minutes); quality runs always use 10")
    ap.add_argument("--seeds", type=int, help="quality seeds (default 1 quick, 3 full)")
    ap.add_argument("--mlp-epochs", type=int, default=200, help="ddi MLP link-predictor epochs (OGB: 200)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--pecanpy-python", help="python of a venv with pecanpy (numpy < 2)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-ddi", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--graph", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--emb-out", default="-", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        out = None if args.emb_out == "-" else Path(args.emb_out)
        fn = {"ours": worker_ours, "gensim": worker_gensim}[args.worker]
        print(json.dumps(fn(args.graph, args.threads, args.seed, out, args.walks_per_node)))
        return
    sys.path.insert(0, str(REPO))
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.nodes = args.nodes or (3000 if args.quick else 1_000_000)
    args.seeds = args.seeds or (1 if args.quick else 3)
    import gensim
    import numba
    import sklearn

    print(f"command: {' '.join(sys.argv)}")
    print(f"versions: python {sys.version.split()[0]}, numpy {np.__version__}, numba {numba.__version__}, "
          f"gensim {gensim.__version__}, scikit-learn {sklearn.__version__}; pecanpy: {args.pecanpy_python}")
    print(f"threads: {args.threads} on every side; load: {os.getloadavg()}")
    result: dict = {"bench": "embedding", "threads": args.threads, "dim": DIM, "walk_length": WALK_LENGTH,
                    "walks_per_node": args.walks_per_node, "window": WINDOW, "negatives": NEG, "epochs": 1}
    with tempfile.TemporaryDirectory(prefix="gnnsys-bench-emb-") as d:
        tmp = Path(d)
        if not args.skip_speed:
            graph = tmp / "speed"
            random_graph(args.nodes, args.degree, 0, graph)
            indptr, _ = load_graph(graph)
            runs: dict[str, list[dict]] = {"ours": [], "gensim": [], "pecanpy": []}
            for r in range(args.repeats):
                for system in ("ours", "gensim", "pecanpy"):
                    if system == "pecanpy":
                        res = run_pecanpy(args.pecanpy_python, graph, args.threads, 0, None, tmp,
                                          args.walks_per_node)
                    else:
                        res = run_worker(system, graph, args.threads, 0, None, args.walks_per_node)
                    res["load"] = os.getloadavg()[0]
                    runs[system].append(res)
                    print(f"round {r} {system}: {json.dumps(res)}", flush=True)
            walk_nodes = (indptr.shape[0] - 1) * args.walks_per_node * WALK_LENGTH
            speed: dict = {"nodes": int(indptr.shape[0] - 1), "edges": int(indptr[-1]), "walk_nodes": walk_nodes}
            for system, rows in runs.items():
                ok = [x["wall_s"] for x in rows if "error" not in x]
                if not ok:
                    speed[system] = None
                    speed[f"{system}_reason"] = rows[0].get("error")
                    continue
                speed[system] = {"wall_s_median": statistics.median(ok), "wall_s_min": min(ok), "wall_s_max": max(ok),
                                 "walk_nodes_per_s": walk_nodes / statistics.median(ok),
                                 "pss_max": max(x.get("pss", 0) for x in rows), "uss_max": max(x.get("uss", 0) for x in rows)}
                if system == "gensim":
                    speed[system]["word2vec_s_median"] = statistics.median(x["word2vec_s"] for x in rows if "error" not in x)
            result["speed"] = speed
            ours = speed["ours"]["wall_s_median"] if speed.get("ours") else None
            for peer in ("gensim", "pecanpy"):
                p = speed.get(peer)
                result[f"ratio_vs_{peer}"] = p["wall_s_median"] / ours if (p and ours) else None
                if not p:
                    result[f"ratio_vs_{peer}_reason"] = speed.get(f"{peer}_reason")
            if speed.get("gensim") and ours:
                result["ratio_vs_gensim_word2vec_only"] = speed["gensim"]["word2vec_s_median"] / ours
        else:
            result["ratio_vs_gensim"] = result["ratio_vs_pecanpy"] = None
            result["ratio_reason"] = "--skip-speed"
        if not args.skip_quality:
            q = {}
            for name in (("Cora",) if args.quick else ("Cora", "CiteSeer")):
                ds = planetoid(name, args.data, tmp)
                q[name] = quality(ds, dataset_graph(ds, tmp), args, tmp)
                print(f"quality {name}: {json.dumps(q[name])}", flush=True)
            result["quality"] = q
        if not args.skip_ddi and not args.quick:
            result["ddi"] = ddi_quality(args, tmp)
            print(f"ddi: {json.dumps(result['ddi'])}", flush=True)
    result["load_end"] = os.getloadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
