"""Index scale: FAISS index types at 100k and 1M passages (build, memory, size, latency, recall).

    python bench/scale.py [--sizes 100000 1000000] [--source INDEX]

The vectors are real MiniLM passage vectors taken from a built index (by default the
SciFact index that `semindex eval ../shared/eval/scifact` caches), repeated with Gaussian
perturbation (sigma 0.02 per dimension, then re-normalised) up to the wanted size: the
neighbourhood structure of real text, at sizes this machine cannot embed in a session.
Queries are 200 real SciFact claims embedded with the same model. Recall@10 is measured
against exact (Flat) search on the same vectors. Each index type is built in its own
process; its peak RSS is the process's VmHWM (ru_maxrss would inherit the parent's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKER = r"""
import json, sys, time
import faiss, numpy as np
vectors = np.load(sys.argv[1], mmap_mode="r")
queries = np.load(sys.argv[2])
truth = np.load(sys.argv[3])
factory, param, path = sys.argv[4], sys.argv[5], sys.argv[6]
began = time.perf_counter()
index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
if not index.is_trained:
    sample = np.ascontiguousarray(vectors[:: max(1, len(vectors) // 100_000)][:100_000])
    index.train(sample)
for start in range(0, len(vectors), 100_000):
    index.add(np.ascontiguousarray(vectors[start:start + 100_000]))
build = time.perf_counter() - began
faiss.write_index(index, path)
size = __import__("os").path.getsize(path)
if param:
    faiss.ParameterSpace().set_index_parameters(index, param)
faiss.omp_set_num_threads(1)
latencies = []
found = []
for query in queries:
    t = time.perf_counter()
    _, ids = index.search(query.reshape(1, -1), 10)
    latencies.append((time.perf_counter() - t) * 1000)
    found.append(ids[0])
recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"build_s": build, "size_mib": size / 2**20, "p50_ms": float(np.percentile(latencies, 50)),
                  "p99_ms": float(np.percentile(latencies, 99)), "recall@10": recall, "rss_mib": peak / 1024}))
"""

CONFIGS = [
    ("Flat", ""),
    ("IVF4096,Flat", "nprobe=32"),
    ("HNSW32,Flat", "efSearch=128"),
]


def source_vectors(index: Path):
    import numpy as np

    from indexer.store import StoredIndex

    stored = StoredIndex.open(index, verify=False)
    return np.asarray(stored.vectors.reconstruct_n(0, stored.count), dtype=np.float32)


def claim_vectors(index: Path, count: int):
    """The first ``count`` SciFact claims, embedded by the index's own query path."""
    import json as json_module

    from query.searcher import open_searcher

    path = ROOT.parent / "shared" / "eval" / "scifact" / "queries.jsonl"
    with path.open(encoding="utf-8") as handle:
        texts = [json_module.loads(line)["text"] for _, line in zip(range(count), handle)]
    return open_searcher(index).embed(texts)


def perturbed(base, size: int, *, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = base[rng.integers(0, len(base), size)] + rng.normal(0, 0.02, (size, base.shape[1])).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


def main() -> None:
    import faiss
    import numpy as np

    from indexer.chunking import ChunkSettings
    from indexer.onnx_export import cache_root
    from query.evaluate import beir_index_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--source", type=Path, default=None)
    args = parser.parse_args()
    source = args.source or beir_index_path(
        ROOT.parent / "shared" / "eval" / "scifact", cache=cache_root(), model=None, settings=ChunkSettings()
    )
    base = source_vectors(source)
    claims = claim_vectors(source, 200)
    print(f"source: {len(base)} real passage vectors from {source}; cores: {os.cpu_count()}")
    print("| passages | index | search param | build s | peak RSS MiB | size MiB | p50 ms | p99 ms | recall@10 |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="semindex-scale-") as scratch:
        for size in args.sizes:
            vectors = perturbed(base, size, seed=size)
            queries = claims
            exact = faiss.IndexFlatIP(vectors.shape[1])
            exact.add(vectors)
            _, truth = exact.search(queries, 10)
            del exact
            paths = [Path(scratch) / name for name in ("vectors.npy", "queries.npy", "truth.npy")]
            for path, array in zip(paths, (vectors, queries, truth)):
                np.save(path, array)
            del vectors
            for factory, param in CONFIGS:
                result = subprocess.run(
                    [sys.executable, "-c", WORKER, *map(str, paths), factory, param, str(Path(scratch) / "index.faiss")],
                    capture_output=True, text=True,
                )
                if result.returncode != 0:
                    print(f"| {size} | {factory} | failed: {result.stderr.strip().splitlines()[-1]} |")
                    continue
                row = json.loads(result.stdout.strip().splitlines()[-1])
                print(f"| {size:,} | {factory} | {param or '-'} | {row['build_s']:.1f} | {row['rss_mib']:.0f} | "
                      f"{row['size_mib']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['recall@10']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
