"""Calibrate ask()'s abstain threshold: where do right answers, wrong ones and unanswerable questions fall?

Questions: the gold questions (shared/eval/questions.yaml), the paraphrased ones in
bench/calibration_questions.yaml and the written development set bench/dev_questions.yaml,
against the bundled index, plus the SciFact claims asked of the same news index (off-topic).
Each question's best sentence and its confidence are taken whatever the threshold, and fall
in one of three groups: *right* (the sentence holds a gold answer: answering is good),
*wrong or unanswerable* (a wrong sentence for an answerable question, or an on-topic question
the corpus does not answer: abstaining is good), *off-topic* (the claims: abstaining is good).
The suggested threshold maximises the mean of the three groups' success rates, so the few
hard on-topic cases weigh as much as the 809 easy claims, and sits in the middle of its gap.
bench/test_questions.yaml is left out: it measures the result.

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
from query.answer import CONFIDENCE_THRESHOLD, Wording, best_sentence  # noqa: E402
from query.index import open_searcher  # noqa: E402


def judged(question: dict) -> tuple[float, bool]:
    """(confidence, right) of ``question``'s best sentence, whatever the threshold."""
    answer = ask(question["question"], index=ROOT / "index")
    searcher = open_searcher(ROOT / "index")
    chosen = best_sentence(question["question"], answer.hits, embed=searcher.embed, embed_question=searcher.embed_question,
                           wording=Wording(question["question"], keyword=searcher.keyword))
    sentence = chosen[0].text[chosen[1]:chosen[2]].lower() if chosen else ""
    return answer.confidence, any(a.lower() in sentence for a in question.get("answers") or [])


def main() -> None:
    shared = ROOT.parent / "shared" / "eval"
    questions = yaml.safe_load((shared / "questions.yaml").read_text(encoding="utf-8"))
    for extra in ("calibration_questions.yaml", "dev_questions.yaml"):
        questions += yaml.safe_load((ROOT / "bench" / extra).read_text(encoding="utf-8"))
    claims = [{"question": json.loads(line)["text"]} for line in (shared / "scifact" / "queries.jsonl").open(encoding="utf-8")]
    results = [judged(q) for q in questions]
    groups = {
        "right": [c for c, right in results if right],
        "wrong or unanswerable": [c for c, right in results if not right],
        "off-topic (SciFact)": [c for c, _ in map(judged, claims)],
    }
    success = lambda t: (sum(c >= t for c in groups["right"]) / len(groups["right"])  # noqa: E731
                         + sum(c < t for c in groups["wrong or unanswerable"]) / len(groups["wrong or unanswerable"])
                         + sum(c < t for c in groups["off-topic (SciFact)"]) / len(groups["off-topic (SciFact)"])) / 3
    everything = sorted({c for values in groups.values() for c in values})
    best = max(everything, key=lambda t: (success(t), t))
    threshold = (best + max((c for c in everything if c < best), default=0.0)) / 2
    quantile = lambda values, q: sorted(values)[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    print(f"{'group':<24}{'n':>6}{'min':>8}{'p5':>8}{'p50':>8}{'p95':>8}{'max':>8}")
    for name, values in groups.items():
        print(f"{name:<24}{len(values):>6}{min(values):>8.3f}{quantile(values, .05):>8.3f}"
              f"{quantile(values, .5):>8.3f}{quantile(values, .95):>8.3f}{max(values):>8.3f}")
    for t in (threshold, CONFIDENCE_THRESHOLD):
        rates = [sum(c >= t for c in groups["right"]) / len(groups["right"])]
        rates += [sum(c < t for c in groups[name]) / len(groups[name]) for name in list(groups)[1:]]
        print(f"threshold {t:.4f}: answers {rates[0]:.1%} of right, abstains on {rates[1]:.1%} of wrong or "
              f"unanswerable and {rates[2]:.1%} of off-topic (mean {sum(rates) / 3:.1%})")
    print(f"suggested CONFIDENCE_THRESHOLD = {threshold:.4f} (in use: {CONFIDENCE_THRESHOLD})")


if __name__ == "__main__":
    main()
