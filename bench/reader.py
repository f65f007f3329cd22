"""Readers × datasets: the sentence picker and the LLM reader (1.5B, 0.5B) on SQuAD and the gold questions.

    python bench/reader.py [--squad FILE] [--limit N] [--models 1.5b,0.5b] [--replies FILE]

SQuAD: ``--limit`` questions spread over the file (default 190), asked end to end of the
cached index of its articles, every 6th article left out (its questions are unanswerable).
Articles 1-12 are the calibration half, 13-24 the test half: the LLM reader's confidence
weights and threshold are fitted on the calibration half plus the gold questions
(printed as "fitted"), and the table's rows use the constants in query/llm_reader.py.
Gold: ../shared/eval/questions.yaml against the bundled index; an answer is right when it
holds a gold answer or lies inside one's occurrence in the cited file ("Google" inside
"engineers at Google"), and every confident answer is checked to be the file's text at
``answer_chars``.

Model replies are cached in ``--replies`` (JSON lines, keyed by model and prompt) with the
seconds they took, so a rerun replays them; replayed seconds are added to the latency.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from query import metrics  # noqa: E402
from query.llm_prompt import PREAMBLE_TURNS  # noqa: E402
from query.llm_reader import THRESHOLD, WEIGHTS, LlmReader, Reply, Trace, engine  # noqa: E402

SHARED = ROOT.parent / "shared" / "eval"


class ReplayChat:
    """The model's chat, with every reply cached on disk by model and messages."""

    def __init__(self, model: str, path: Path) -> None:
        self.model, self.path, self.replayed = model, path, 0.0
        self.cache: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.cache[entry["key"]] = entry

    def __call__(self, messages: list[dict[str, str]]) -> Reply:
        key = hashlib.sha256(json.dumps([self.model, messages], sort_keys=True).encode()).hexdigest()
        if key not in self.cache:
            reply = engine(self.model).chat(messages, keep=PREAMBLE_TURNS)
            entry = {"key": key, "text": reply.text, "logprobs": list(reply.logprobs), "seconds": reply.seconds}
            with self.path.open("a") as out:
                out.write(json.dumps(entry) + "\n")
            self.cache[key] = entry
        else:
            self.replayed += self.cache[key]["seconds"]
        entry = self.cache[key]
        return Reply(text=entry["text"], logprobs=tuple(entry["logprobs"]), seconds=entry["seconds"])


class Traced:
    """A reader keeping the trace of its last read (the bench asks one question at a time)."""

    def __init__(self, chat: ReplayChat | None) -> None:
        from query.readers import SentenceReader

        self.reader = LlmReader(chat=chat) if chat else SentenceReader()
        self.name, self.passages, self.last = self.reader.name, self.reader.passages, Trace(())

    def read(self, question, hits, *, tools):
        if not isinstance(self.reader, LlmReader):
            return self.reader.read(question, hits, tools=tools)
        answer, self.last = self.reader.read_traced(question, hits, tools=tools)
        return answer


def features(last: Trace) -> dict:
    return {"replies": [reply.text for reply in last.replies], "logprob": last.logprob,
            "coverage": last.coverage, "first": last.rank == 1, "fallback": last.fallback}


def run_squad(path: Path, *, model: str | None, limit: int, chat: ReplayChat | None) -> list[dict]:
    """One row per question: the answer, its scores, the reader's features, the latency."""
    from query.squad import evaluate_squad, holds_gold

    rows, reader = [], Traced(chat)
    replayed = [chat.replayed if chat else 0.0]

    def seen(question, answer, scores) -> None:
        last = reader.last
        rows.append({"question": question.question, "gold": list(question.answers), "answer": answer.answer,
                     "confidence": answer.confidence, "answerable": bool(question.answers),
                     "right": bool(answer.answer and question.answers and holds_gold(answer.answer, question.answers)),
                     "article": int(question.file[:3]) + 1, "replayed_ms": 1000 * ((chat.replayed if chat else 0) - replayed[0]),
                     "right_any": bool(last.span and question.answers and holds_gold(last.span[0], question.answers)),
                     **scores, **features(last)})
        replayed[0] = chat.replayed if chat else 0.0

    report = evaluate_squad(path, reader=reader, limit=limit, on_answer=seen)
    for row, latency in zip(rows, report.latencies_ms):
        row["latency_ms"] = latency + row.pop("replayed_ms")
    return rows


def gold_right(text: str | None, *, file: str | None, chars, entry: dict, corpus: Path) -> bool:
    """Does the answer ``text`` hold a gold answer, or lie (at ``chars`` of ``file``) inside an
    occurrence of one in that file?"""
    if not text:
        return False
    golds = [gold.lower() for gold in entry.get("answers") or []]
    if any(gold in text.lower() for gold in golds):
        return True
    content = (corpus / file).read_text(encoding="utf-8").lower()
    for gold in golds:
        at = content.find(gold)
        while at >= 0:
            if at <= chars[0] and chars[1] <= at + len(gold):
                return True
            at = content.find(gold, at + 1)
    return False


def run_gold(path: Path, *, chat: ReplayChat | None, index: Path, corpus: Path) -> list[dict]:
    """One row per gold question, asked of the bundled index."""
    import yaml

    from query.index import Index

    generation = Index.open(index).live()
    reader = Traced(chat)
    generation.ask("warm-up", k=5, reader=reader)  # the model loads here, not in the first question's latency
    rows = []
    for entry in yaml.safe_load(path.read_text()):
        before = chat.replayed if chat else 0.0
        began = time.perf_counter()
        answer = generation.ask(entry["question"], k=5, reader=reader)
        latency = 1000 * (time.perf_counter() - began + ((chat.replayed if chat else 0.0) - before))
        quoted = None
        if answer.answer:
            text = (corpus / answer.citations[0].file).read_text(encoding="utf-8")
            quoted = text[answer.answer_chars[0]:answer.answer_chars[1]] == answer.answer
        last = reader.last
        rows.append({"id": entry["id"], "question": entry["question"], "gold": entry["answers"], "answer": answer.answer,
                     "confidence": answer.confidence, "answerable": bool(entry["answers"]),
                     "right": gold_right(answer.answer, file=answer.citations[0].file if answer.answer else None,
                                         chars=answer.answer_chars, entry=entry, corpus=corpus),
                     "right_any": bool(last.span) and gold_right(last.span[0], file=last.span[1], chars=last.span[2], entry=entry,
                                                                  corpus=corpus),
                     "quoted": quoted, "latency_ms": latency, **features(last)})
    return rows


def summary(rows: list[dict]) -> dict:
    answerable = [row for row in rows if row["answerable"]]
    unanswerable = [row for row in rows if not row["answerable"]]
    mean = lambda values: round(metrics.mean(values), 3) if values else None  # noqa: E731
    latencies = [row["latency_ms"] for row in rows]
    return {
        "em": mean([row.get("em", 0.0) for row in answerable]) if "em" in rows[0] else None,
        "f1": mean([row.get("f1", 0.0) for row in answerable]) if "f1" in rows[0] else None,
        "right": sum(row["right"] for row in answerable), "answerable": len(answerable),
        "wrong": mean([bool(row["answer"]) and not row["right"] for row in answerable]),
        "abstain": mean([row["answer"] is None for row in unanswerable]), "unanswerable": len(unanswerable),
        "p50_s": round(metrics.percentile(latencies, 50) / 1000, 2), "p95_s": round(metrics.percentile(latencies, 95) / 1000, 2),
    }


def fit(rows: list[dict]) -> tuple[dict[str, float], float]:
    """Logistic weights of (mean token log-probability, keyword coverage, answer from the first
    passage) predicting a right
    answer, over the rows where the model's reply was found; then the threshold that
    maximises right minus wrong confident answers (an answer to an unanswerable is wrong)."""
    import numpy as np

    used = [row for row in rows if row["logprob"] is not None]
    x = np.array([[row["logprob"], row["coverage"], float(row["first"]), 1.0] for row in used])
    y = np.array([float(row["right_any"]) for row in used])
    w = np.zeros(4)
    for _ in range(2000):  # gradient descent on the log-loss, a little L2 so separable data stays finite
        p = 1 / (1 + np.exp(-x @ w))
        w -= 0.1 * (x.T @ (p - y) / len(y) + 0.01 * w)
    confidence = 1 / (1 + np.exp(-x @ w))
    best = max(sorted(set(np.round(confidence, 3))),
               key=lambda t: float(((confidence >= t) * (2 * y - 1)).sum()))
    names = ("logprob", "coverage", "first", "bias")
    return {name: round(float(value), 3) for name, value in zip(names, w)}, float(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", type=Path, default=SHARED / "squad" / "dev-v1.1-half.json")
    parser.add_argument("--gold", type=Path, default=SHARED / "questions.yaml")
    parser.add_argument("--limit", type=int, default=190)
    parser.add_argument("--models", default="1.5b", help="LLM reader models, comma-separated (1.5b, 0.5b, or a .gguf)")
    parser.add_argument("--replies", type=Path, default=Path.home() / ".cache" / "semindex" / "reader-replies.jsonl")
    parser.add_argument("--out", type=Path, default=None, help="Write every row as JSON here.")
    args = parser.parse_args()
    args.replies.parent.mkdir(parents=True, exist_ok=True)
    readers = {"sentence": None} | {f"llm {m}": ReplayChat(m, args.replies) for m in args.models.split(",") if m}
    results, table = {}, []
    for name, chat in readers.items():
        squad = run_squad(args.squad, model=None, limit=args.limit, chat=chat)
        gold = run_gold(args.gold, chat=chat, index=ROOT / "index", corpus=ROOT / "corpus")
        results[name] = {"squad": squad, "gold": gold}
        for label, subset in (("SQuAD test half (articles 13-24)", [r for r in squad if r["article"] > 12]),
                              ("SQuAD calibration half (1-12)", [r for r in squad if r["article"] <= 12]),
                              ("gold questions", gold)):
            table.append({"reader": name, "dataset": label, **summary(subset)})
        if chat is not None:
            calibration = [r for r in squad if r["article"] <= 12] + gold
            weights, threshold = fit(calibration)
            print(f"{name}: fitted WEIGHTS = {weights}, THRESHOLD = {threshold:.3f} "
                  f"(in use: {WEIGHTS}, {THRESHOLD})", file=sys.stderr)
    columns = ["reader", "dataset", "em", "f1", "right", "answerable", "wrong", "abstain", "unanswerable", "p50_s", "p95_s"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in table:
        print("| " + " | ".join("-" if row[c] is None else str(row[c]) for c in columns) + " |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
