"""Retrieval quality per mode on SciFact (train split) and the gold questions.

    python bench/quality.py [--limit N]

Prints one row per (target, mode): nDCG@10, Recall@100, MRR@10, hit@1, abstain accuracy
and query latency. The SciFact corpus is indexed once into the cache (~/.cache/semindex/beir)
and reused; the gold questions run against the bundled index.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from query.evaluate import evaluate_beir, evaluate_gold  # noqa: E402
from query.searcher import MODES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N SciFact queries only")
    parser.add_argument("--modes", nargs="*", default=list(MODES))
    args = parser.parse_args()
    shared = ROOT.parent / "shared" / "eval"
    rows = []
    for mode in args.modes:
        rows.append(("SciFact train", evaluate_beir(shared / "scifact", mode=mode, limit=args.limit, progress=True)))
    for mode in args.modes:
        rows.append(("gold questions", evaluate_gold(shared / "questions.yaml", index=ROOT / "index", mode=mode)))
    header = f"| {'target':<15}| {'mode':<22}| nDCG@10 | Recall@100 | MRR@10 | hit@1 | abstain | queries | mean ms | p95 ms |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for target, report in rows:
        row = report.to_dict()
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(
            f"| {target:<15}| {row['mode']:<22}| {fmt(row['ndcg@10']):>7} | {fmt(row['recall@100']):>10} | "
            f"{fmt(row['mrr@10']):>6} | {fmt(row['hit@1']):>5} | {fmt(row['abstain']):>7} | {row['queries']:>7} | "
            f"{row['latency_mean_ms']:>7.1f} | {row['latency_p95_ms']:>6.1f} |"
        )


if __name__ == "__main__":
    main()
