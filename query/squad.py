"""SQuAD-format question answering (v1.1 or v2.0 JSON) as an evaluation target for ``ask``.

Each article becomes one file (its title, a blank line, then its paragraphs separated by
blank lines), indexed once into the eval cache. Questions are asked of the index end to end
(retrieval, then a reader), so the scores are open-domain ones, not the gold-paragraph
scores SQuAD papers report. A SQuAD 2.0 question marked ``is_impossible``, or any question
about an article left out of the index, should be abstained on.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.errors import SemindexError
from query import metrics

if TYPE_CHECKING:
    from query.readers import Reader

LEAVE_OUT_EVERY = 6
"""Every 6th article (the 6th, 12th, …) is left out of the index: its questions are
unanswerable from the corpus, which measures abstention on SQuAD v1.1 files too."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    """Gold answer texts; empty for a question the corpus cannot answer."""
    file: str
    paragraph: tuple[int, int]
    """[start, end) of the question's own paragraph in its article's file."""


@dataclass(frozen=True)
class SquadArticle:
    file: str
    title: str
    text: str
    paragraphs: list[tuple[int, int]]
    questions: list[Question]


def _fail(path: Path, where: str, problem: str) -> SemindexError:
    return SemindexError(f"{path}: {where}: {problem}")


def load_squad(path: Path) -> list[SquadArticle]:
    """The articles of a SQuAD JSON file, each laid out as the file it is indexed as.
    Malformed input raises :class:`SemindexError` naming the file and the field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise SemindexError(f"{path}: cannot read SQuAD JSON ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list) or not data["data"]:
        raise SemindexError(f"{path}: expected a SQuAD JSON object with a non-empty 'data' list")
    articles = []
    for number, entry in enumerate(data["data"]):
        where = f"data[{number}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("title"), str) or not isinstance(entry.get("paragraphs"), list):
            raise _fail(path, where, "expected 'title' (string) and 'paragraphs' (list)")
        title = " ".join(entry["title"].replace("_", " ").split())
        name = f"{number:03d}_{re.sub(r'[^A-Za-z0-9]+', '_', title)[:40].strip('_')}.txt"
        text, spans, questions = title + "\n\n", [], []
        for p_number, paragraph in enumerate(entry["paragraphs"]):
            p_where = f"{where}.paragraphs[{p_number}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str) \
                    or not isinstance(paragraph.get("qas"), list):
                raise _fail(path, p_where, "expected 'context' (string) and 'qas' (list)")
            context = paragraph["context"].strip()
            start = len(text)
            text += context + "\n\n"
            spans.append((start, start + len(context)))
            for q_number, qa in enumerate(paragraph["qas"]):
                q_where = f"{p_where}.qas[{q_number}]"
                if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or not qa["question"].strip():
                    raise _fail(path, q_where, "'question' must be a non-empty string")
                answers = qa.get("answers", [])
                if not isinstance(answers, list) or not all(isinstance(a, dict) and isinstance(a.get("text"), str)
                                                             for a in answers):
                    raise _fail(path, q_where, "'answers' must be a list of objects with 'text'")
                impossible = bool(qa.get("is_impossible"))
                if not answers and not impossible:
                    raise _fail(path, q_where, "no 'answers' and not 'is_impossible'")
                texts = () if impossible else tuple(dict.fromkeys(a["text"] for a in answers))
                questions.append(Question(id=str(qa.get("id", f"{number}.{p_number}.{q_number}")),
                                          question=qa["question"].strip(), answers=texts, file=name,
                                          paragraph=spans[-1]))
        articles.append(SquadArticle(file=name, title=title, text=text.rstrip("\n") + "\n", paragraphs=spans,
                                     questions=questions))
    return articles


def squad_documents(articles: list[SquadArticle]) -> list:
    """Each article as a parsed file: a title passage, and one body segment per paragraph so
    no passage spans two paragraphs."""
    from indexer.documents import Article, ParsedFile, Segment

    parsed = []
    for article in articles:
        key = f"squad:{article.file}"
        segments = [Segment(file=article.file, start=0, end=len(article.title), kind="title", article=key)]
        segments += [Segment(file=article.file, start=start, end=end, kind="body", article=key)
                     for start, end in article.paragraphs]
        parsed.append(ParsedFile(name=article.file, text=article.text,
                                 sha256=hashlib.sha256(article.text.encode()).hexdigest(),
                                 articles={key: Article(key=key, title=article.title)}, segments=segments, chrome=[],
                                 has_metadata=True))
    return parsed


def cached_squad_index(path: Path, articles: list[SquadArticle], *, cache: Path | None = None,
                       progress: bool = False) -> Path:
    """The eval cache's index of ``articles`` (built on first use, rebuilt when other indexer
    code built it), keyed by their text, the chunking and the embedding precision."""
    from indexer.build import build_from_parsed
    from indexer.chunking import ChunkSettings
    from indexer.build_model import BuildModel
    from indexer.onnx_export import INT8_RECIPE, cache_root
    from indexer.store import POINTER
    from query.evaluate import built_by_other_code, cache_fill_lock

    settings = ChunkSettings()
    precision = BuildModel(model=None).settled_precision()
    digest = hashlib.sha256()
    for article in articles:
        digest.update(f"{article.file}\0{article.text}\0".encode())
    key = hashlib.sha256(f"{digest.hexdigest()}|{settings.to_dict()}|{precision}|{INT8_RECIPE}".encode()).hexdigest()[:16]
    index = (cache or cache_root()) / "squad" / f"{re.sub(r'[^A-Za-z0-9_-]', '_', Path(path).stem)}-{key}"
    if not (index / POINTER).is_file() or built_by_other_code(index):
        with cache_fill_lock(index):
            if not (index / POINTER).is_file() or built_by_other_code(index):
                build_from_parsed(squad_documents(articles), index=index, settings=settings, progress=progress,
                                  precision=precision)
    return index


def normalize_answer(text: str) -> str:
    """SQuAD's official normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised texts, as SQuAD's official script computes it."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def holds_gold(text: str, answers: tuple[str, ...]) -> bool:
    """Does ``text`` contain one of the gold answers (compared normalised)?"""
    normalized = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(answer)} " in normalized for answer in answers if normalize_answer(answer))


def pick_questions(articles: list[SquadArticle], *, limit: int | None,
                   leave_out_every: int = LEAVE_OUT_EVERY) -> tuple[list[SquadArticle], list[Question]]:
    """(indexed articles, questions to ask): every ``leave_out_every``-th article is left out
    of the index and its questions lose their answers; ``limit`` takes that many questions
    spread evenly over the file (the first N would all be about one article)."""
    indexed, questions = [], []
    for number, article in enumerate(articles, start=1):
        left_out = leave_out_every > 0 and number % leave_out_every == 0
        if not left_out:
            indexed.append(article)
        questions += [Question(id=q.id, question=q.question, answers=() if left_out else q.answers, file=q.file,
                               paragraph=q.paragraph) for q in article.questions]
    if limit and limit < len(questions):
        step = len(questions) / limit
        questions = [questions[int(i * step)] for i in range(limit)]
    return indexed, questions


@dataclass
class SquadReport:
    """Scores of one reader on a SQuAD file, shaped like :class:`query.evaluate.EvalReport`."""

    target: str
    reader: str
    scores: dict[str, float | None]
    queries: int
    latencies_ms: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    mode: str = "hybrid"
    split: str | None = None

    def to_dict(self) -> dict[str, Any]:
        latency = {f"latency_{name}_ms": round(metrics.percentile(self.latencies_ms, p), 2) if self.latencies_ms else None
                   for name, p in (("p50", 50), ("p95", 95))}
        return {"target": self.target, "split": self.split, "mode": self.mode, "reader": self.reader, **self.scores,
                "queries": self.queries, **latency, "warnings": self.warnings}


SQUAD_KEYS = ("em", "f1", "answered", "wrong", "abstain", "para@1", "para@5")


def _inside(hit, paragraph: tuple[int, int]) -> str:
    """The part of ``hit``'s text that lies inside ``paragraph`` (a passage may run on into
    the next paragraph of its article)."""
    start, end = hit.citation.chars
    return hit.text[max(paragraph[0] - start, 0):max(min(paragraph[1], end) - start, 0)]


def score_question(question: Question, answer, hits) -> dict[str, float]:
    """One question's scores: ``em``/``f1`` against the best gold answer (0 when abstained),
    ``wrong`` for a confident answer holding no gold answer, ``para@k`` for a hit among the top
    k whose part inside the question's own paragraph holds a gold answer; ``abstained`` for any question."""
    predicted = answer.answer if answer.confident else None
    para = [hit.citation.file == question.file and holds_gold(_inside(hit, question.paragraph), question.answers)
            for hit in hits]
    return {
        "em": max((exact_match(predicted, gold) for gold in question.answers), default=0.0) if predicted else 0.0,
        "f1": max((f1_score(predicted, gold) for gold in question.answers), default=0.0) if predicted else 0.0,
        "answered": float(predicted is not None),
        "wrong": float(predicted is not None and not holds_gold(predicted, question.answers)),
        "para@1": float(any(para[:1])),
        "para@5": float(any(para[:5])),
        "abstained": float(predicted is None),
    }


def evaluate_squad(path: Path, *, reader: str | Reader = "sentence", reader_model: str | None = None, mode: str = "hybrid",
                   limit: int | None = None, leave_out_every: int = LEAVE_OUT_EVERY, cache: Path | None = None,
                   progress: bool = False, on_answer: Callable[..., None] | None = None) -> SquadReport:
    """Ask each picked question of the cached index of the file's (non-left-out) articles
    with ``reader`` (a :class:`~query.readers.Reader`, or a name of
    :func:`query.llm_reader.reader_for`) and score the answers. ``em``, ``f1``, ``answered``, ``wrong``, ``para@k``
    average over answerable questions; ``abstain`` over the unanswerable ones (SQuAD 2.0
    ``is_impossible`` or articles left out). Latency is retrieval plus reading, per question.
    ``on_answer(question, answer, scores)`` sees each result (for benches)."""
    from query.index import Index
    from query.llm_reader import reader_for

    articles = load_squad(path)
    indexed, questions = pick_questions(articles, limit=limit, leave_out_every=leave_out_every)
    if not indexed:
        raise SemindexError(f"{path}: every article is left out of the index")
    generation = Index.open(cached_squad_index(path, indexed, cache=cache, progress=progress)).live()
    chosen = reader_for(reader, model=reader_model) if isinstance(reader, str) else reader
    generation.ask("warm-up", k=5, mode=mode, reader=chosen)  # the model loads here, not in the first latency
    answerable, unanswerable, latencies = [], [], []
    for question in questions:
        began = time.perf_counter()
        answer = generation.ask(question.question, k=5, mode=mode, reader=chosen)
        latencies.append((time.perf_counter() - began) * 1000)
        scores = score_question(question, answer, answer.hits[:5])
        (answerable if question.answers else unanswerable).append(scores)
        if on_answer:
            on_answer(question, answer, scores)
    scores: dict[str, float | None] = dict.fromkeys(SQUAD_KEYS)
    if answerable:
        scores.update({key: metrics.mean(s[key] for s in answerable) for key in SQUAD_KEYS if key != "abstain"})
    if unanswerable:
        scores["abstain"] = metrics.mean(s["abstained"] for s in unanswerable)
    scores["answerable"], scores["unanswerable"] = len(answerable), len(unanswerable)
    return SquadReport(target=str(path), reader=chosen.name, scores=scores, queries=len(questions),
                       latencies_ms=latencies, mode=mode)


def is_squad(path: Path) -> bool:
    """Is ``path`` a JSON file (to be read as SQuAD) rather than gold questions YAML?"""
    return Path(path).suffix.lower() == ".json"
