"""A local build and a Ray build of the same corpus, side by side (``semindex build --ray``).

    python bench/ray_build.py [--articles 9000] [--cpus 2]

The corpus: the SciFact abstracts (5,183), then the MS MARCO passages of ../shared/eval/msmarco5k,
as plain text files, the first ``--articles`` of them. Both builds run ``semindex build`` in a
fresh process at int8 (the default) with the ONNX export already cached: first a local build,
then one with ``--ray`` against a head this script starts on loopback with ``--cpus`` CPUs (the
head's start is not timed: a cluster is already running when a build is asked of it). Printed:
a Markdown table of wall seconds and passages/s for each, the seconds of each stage the Ray build
ran on the cluster (checking, fingerprinting, reading and cutting the corpus as tasks, embedding
by the actor pool: from its manifest), the embedders' throughput, the driver's own seconds (the
rest: walking the corpus, linking, joining shards, FAISS, BM25, passage store, manifest, and
joining the cluster), and whether the two indexes match as ``semindex build --check`` compares
them. ``bench/scale.py --ray`` runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
SHARED = ROOT.parent / "shared" / "eval"


def write_corpus(folder: Path, articles: int) -> int:
    """The first ``articles`` SciFact abstracts and MS MARCO passages as .txt files; how many."""
    folder.mkdir(parents=True)
    written = 0
    for name in ("scifact", "msmarco5k"):
        with (SHARED / name / "corpus.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                if written == articles:
                    return written
                doc = json.loads(line)
                title = f"{doc['title']}\n\n" if doc.get("title") else ""
                (folder / f"{name}-{doc['_id']}.txt").write_text(f"{title}{doc['text']}\n", encoding="utf-8")
                written += 1
    return written


def timed_build(corpus: Path, index: Path, *extra: str, env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run([str(BIN / "semindex"), "build", str(corpus), "--index", str(index), *extra],
                   check=True, capture_output=True, text=True, env=env, timeout=3600)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=9000)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    from indexer.compare import compare_indexes
    from indexer.store import StoredIndex

    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    with tempfile.TemporaryDirectory(prefix="semindex-ray-") as scratch:
        corpus, local, on_ray = Path(scratch) / "corpus", Path(scratch) / "local", Path(scratch) / "ray"
        articles = write_corpus(corpus, args.articles)
        local_s = timed_build(corpus, local, env=env)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        temp = tempfile.mkdtemp(prefix="sray")
        ray = str(BIN / "ray")
        subprocess.run([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus",
                        str(args.cpus), "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                       check=True, capture_output=True, timeout=180, env=env)
        try:
            ray_s = timed_build(corpus, on_ray, "--ray", f"127.0.0.1:{port}", env=env)
        finally:
            subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120, env=env)
            shutil.rmtree(temp, ignore_errors=True)
        stored = StoredIndex.open(on_ray)
        passages = stored.count
        cluster = stored.manifest["build"]["ray"]
        problems = compare_indexes(expected=local, actual=on_ray)
    embed_s = cluster["seconds"]
    workers = len(cluster["workers"])
    stages = ("check", "fingerprint", "read", "cut")
    corpus_s = [cluster[stage]["seconds"] for stage in stages]
    print(f"{articles:,} articles, {passages:,} passages; machine: {os.cpu_count()} cores (shared), load "
          f"{os.getloadavg()[0]:.1f} at the end; Ray: {args.cpus} CPUs, {workers} embedders")
    print("| build | wall s | passages/s | on the cluster: check / fingerprint / read / cut / embed s "
          "| passages/s per embedder | driver's own s |")
    print("|---|---:|---:|---|---:|---:|")
    print(f"| local | {local_s:.1f} | {passages / local_s:.0f} | | | |")
    print(f"| --ray (head on loopback) | {ray_s:.1f} | {passages / ray_s:.0f} | "
          f"{' / '.join(f'{seconds:.1f}' for seconds in [*corpus_s, embed_s])} | "
          f"{passages / embed_s / workers:.0f} | {ray_s - embed_s - sum(corpus_s):.1f} |")
    print(f"Ray overhead: {100 * (ray_s / local_s - 1):+.0f}% wall; indexes "
          + ("match (semindex build --check's comparison)" if not problems else f"differ: {problems}"))

if __name__ == "__main__":
    main()
