"""Calibrate ask()'s abstain threshold: where do answerable and unanswerable questions fall?

Positives: the answerable gold questions (shared/eval/questions.yaml), the paraphrased
ones in bench/calibration_questions.yaml and the written development set
bench/dev_questions.yaml, against the bundled index. Negatives: the unanswerable questions of
those files (on-topic questions the corpus does not answer) plus the SciFact claims asked of
the same news index. bench/test_questions.yaml is left out: it measures the result. Prints the confidence distribution of
both and the threshold that maximises balanced accuracy, placed in the middle of its gap.

    python bench/calibrate.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from query import ask  # noqa: E402
from query.answer import CONFIDENCE_THRESHOLD  # noqa: E402


def confidences(questions: list[str]) -> list[float]:
    return [ask(question, index=ROOT / "index").confidence for question in questions]


def main() -> None:
    shared = ROOT.parent / "shared" / "eval"
    gold = yaml.safe_load((shared / "questions.yaml").read_text(encoding="utf-8"))
    for extra in ("calibration_questions.yaml", "dev_questions.yaml"):
        gold += yaml.safe_load((ROOT / "bench" / extra).read_text(encoding="utf-8"))
    positives = confidences([q["question"] for q in gold if q["answers"]])
    claims = [json.loads(line)["text"] for line in (shared / "scifact" / "queries.jsonl").open(encoding="utf-8")]
    negatives = confidences([q["question"] for q in gold if not q["answers"]] + claims)
    candidates = sorted(set(positives + negatives))
    best = max(
        candidates,
        key=lambda t: (
            (sum(p >= t for p in positives) / len(positives) + sum(n < t for n in negatives) / len(negatives)) / 2,
            t,
        ),
    )
    below = max((n for n in negatives if n < best), default=0.0)
    threshold = (best + below) / 2
    quantile = lambda values, q: sorted(values)[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    print(f"{'set':<28}{'n':>6}{'min':>8}{'p5':>8}{'p50':>8}{'p95':>8}{'max':>8}")
    for name, values in (("answerable", positives), ("unanswerable (+SciFact)", negatives)):
        print(f"{name:<28}{len(values):>6}{min(values):>8.3f}{quantile(values, .05):>8.3f}"
              f"{quantile(values, .5):>8.3f}{quantile(values, .95):>8.3f}{max(values):>8.3f}")
    for t in (threshold, CONFIDENCE_THRESHOLD):
        tpr = sum(p >= t for p in positives) / len(positives)
        tnr = sum(n < t for n in negatives) / len(negatives)
        print(f"threshold {t:.3f}: answers {tpr:.1%} of answerable, abstains on {tnr:.1%} of unanswerable")
    print(f"suggested CONFIDENCE_THRESHOLD = {threshold:.2f} (in use: {CONFIDENCE_THRESHOLD})")


if __name__ == "__main__":
    main()
