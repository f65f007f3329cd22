"""BM25 keyword index over the same passages as the vectors (bm25s, stored without pickle)."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from indexer import integrity, safety
from indexer.errors import CorpusError, IndexFormatError
from indexer.wordlists import QUESTION_WORDS

KEYWORD_DIR = "bm25"
ARTICLE_KEYWORD_DIR = "bm25_articles"
PARAGRAPH_KEYWORD_DIR = "bm25_paragraphs"
"""BM25 over whole articles (row i = the i-th key of articles.json), for ranking documents."""


@dataclass(frozen=True)
class KeywordSettings:
    """BM25 parameters: Lucene's defaults (k1 1.2, b 0.75) with English stopwords and
    Snowball stemming, so 'reverses' matches 'reversing'."""

    k1: float = 1.2
    b: float = 0.75
    stemmer: str | None = "english"
    stopwords: str = "en"

    def to_dict(self) -> dict:
        return {"k1": self.k1, "b": self.b, "stemmer": self.stemmer, "stopwords": self.stopwords, "method": "lucene"}

    @classmethod
    def from_dict(cls, data: dict) -> KeywordSettings:
        return cls(k1=data["k1"], b=data["b"], stemmer=data["stemmer"], stopwords=data["stopwords"])


TOKEN_PATTERN = r"(?u)\b\w\w+\b"
NORMAL_FORM = "NFKC"
"""Unicode normalisation of texts and queries before tokenizing: a composed "ü" and a "u" with
a combining diaeresis, full-width letters, ligatures such as "ﬁ" are the same word."""
TOKENIZER_FILE = "tokenizer.json"


class KeywordIndex:
    """A BM25 index in ``folder``: built and saved by bm25s, queried with numpy alone.

    bm25s precomputes every (term, passage) BM25 weight into a sparse term-major matrix;
    scoring a query is summing the rows of its terms. Doing that sum here, from the saved
    arrays memory-mapped, avoids importing bm25s and scipy (~0.4 s) on every query.
    """

    def __init__(self, folder: Path, settings: KeywordSettings, *, rows: int | None = None) -> None:
        """``rows``: how many passages (or articles) a stored index must score, checked on load."""
        self.folder = folder
        self.settings = settings
        self.rows = rows

    @cached_property
    def _stem(self):
        if self.settings.stemmer is None:
            return lambda words: words
        import Stemmer

        if self.settings.stemmer not in Stemmer.algorithms():
            raise IndexFormatError(f"{self.folder}: stemmer {safety.brief(self.settings.stemmer)} is not one PyStemmer has")
        return Stemmer.Stemmer(self.settings.stemmer).stemWords

    def build(self, texts: list[str]) -> None:
        """Index ``texts`` (passage i is row i) with bm25s and save it without pickle."""
        import bm25s
        from bm25s.tokenization import _infer_stopwords

        retriever = bm25s.BM25(k1=self.settings.k1, b=self.settings.b, method="lucene")
        tokens = bm25s.tokenize(
            [unicodedata.normalize(NORMAL_FORM, text) for text in texts], stopwords=self.settings.stopwords,
            stemmer=self._stem, token_pattern=TOKEN_PATTERN, show_progress=False,
        )
        if not tokens.vocab:
            raise CorpusError("no passage has a word to index (only stopwords, one-letter words and punctuation)")
        retriever.index(tokens, show_progress=False)
        self.folder.mkdir(parents=True, exist_ok=True)
        retriever.save(str(self.folder), allow_pickle=False, show_progress=False)
        tokenizer = {"token_pattern": TOKEN_PATTERN, "lower": True, "normalize": NORMAL_FORM,
                     "stopwords": sorted(_infer_stopwords(self.settings.stopwords))}
        (self.folder / TOKENIZER_FILE).write_text(json.dumps(tokenizer, indent=1) + "\n", encoding="utf-8")

    @cached_property
    def _tokenizer(self) -> tuple[re.Pattern, frozenset[str], str | None]:
        path = self.folder / TOKENIZER_FILE
        try:
            return integrity.keyword_tokenizer(safety.json_loads(path.read_text(encoding="utf-8")))
        except (ValueError, OSError) as error:
            raise IndexFormatError(f"{path}: corrupt ({error})") from None

    @cached_property
    def _vocabulary(self) -> dict[str, int]:
        return self._checked[0]

    @cached_property
    def _matrix(self):
        return self._checked[1]

    @cached_property
    def _checked(self):
        """(vocabulary, (data, indices, indptr, num_docs)) as stored, checked once: a tampered
        matrix must fail in one line, not index past an array or allocate 10^12 scores."""
        try:
            vocabulary = safety.json_loads((self.folder / "vocab.index.json").read_text(encoding="utf-8"))
            arrays = {name: integrity.load_array(self.folder / f"{name}.csc.index.npy", kind=kind)
                      for name, kind in (("data", "f"), ("indices", "i"), ("indptr", "i"))}
            params = safety.json_loads((self.folder / "params.index.json").read_text(encoding="utf-8"))
        except (ValueError, OSError) as error:
            raise IndexFormatError(f"{self.folder}: corrupt keyword index ({error})") from None
        size = params.get("num_docs") if isinstance(params, dict) else None
        if problem := integrity.keyword_problem(num_docs=size, expected=self.rows, vocabulary=vocabulary, **arrays):
            raise IndexFormatError(f"{self.folder}: corrupt keyword index ({problem})")
        return vocabulary, (arrays["data"], arrays["indices"], arrays["indptr"], int(size))

    def terms(self, text: str) -> list[str]:
        """``text``'s terms as bm25s tokenizes them (NFKC-normalised, lower-cased, stopwords
        and question words out, stemmed), whether or not the index has them."""
        pattern, stopwords, normal_form = self._tokenizer
        if normal_form:  # as the index's texts were (none for indexes built before)
            text = unicodedata.normalize(normal_form, text)
        return self._stem([w for w in pattern.findall(text.lower()) if w not in stopwords and w not in QUESTION_WORDS])

    def term_ids(self, query: str) -> list[int]:
        """The query's terms that the index has, as rows of its matrix."""
        vocabulary = self._vocabulary
        return [vocabulary[term] for term in self.terms(query) if term in vocabulary]

    def term_weights(self, terms: list[str]) -> dict[str, float]:
        """Each term's BM25 inverse document frequency, ln(1 + (N - df + 0.5) / (df + 0.5)),
        with df the passages that contain it: rare words weigh more than words every passage has.
        A term the index lacks gets the mean weight of those it has (1.0 when it has none), not
        the maximum: an unseen word is as likely a paraphrase as a sign of a topic the corpus lacks."""
        import math

        _, _, indptr, size = self._matrix
        vocabulary = self._vocabulary
        known = {}
        for term in terms:
            if term in vocabulary:
                df = int(indptr[vocabulary[term] + 1] - indptr[vocabulary[term]])
                known[term] = math.log(1 + (size - df + 0.5) / (df + 0.5))
        unseen = sum(known.values()) / len(known) if known else 1.0
        return {term: known.get(term, unseen) for term in terms}

    def search(self, query: str, *, k: int, mask=None) -> list[tuple[int, float]]:
        """The ``k`` best passages for ``query`` by BM25 as (passage id, score > 0); with
        ``mask`` (a bool per passage) only passages it marks are scored."""
        import numpy as np

        terms = self.term_ids(query)
        if not terms or k <= 0:
            return []
        data, indices, indptr, size = self._matrix
        scores = np.zeros(size, dtype=np.float32)
        for term in terms:
            start, end = int(indptr[term]), int(indptr[term + 1])
            np.add.at(scores, indices[start:end], data[start:end])
        if mask is not None:
            np.multiply(scores, mask, out=scores)
        found = np.flatnonzero(scores > 0)  # the passages holding a term: usually a small share
        if k < len(found):  # equal scores rank by passage id, so a ranking never depends on k
            values = scores[found]
            kth = np.partition(values, len(found) - k)[len(found) - k]  # the k-th best score
            found = np.concatenate([found[values > kth], found[values == kth][: k - int((values > kth).sum())]])
        top = found[np.lexsort((found, -scores[found]))]
        return [(int(i), float(scores[i])) for i in top]
