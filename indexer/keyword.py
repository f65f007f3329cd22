"""BM25 keyword index over the same passages as the vectors (bm25s, stored without pickle)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

KEYWORD_DIR = "bm25"


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


class KeywordIndex:
    """A bm25s index in ``folder`` (built by ``build``, loaded memory-mapped by ``load``)."""

    def __init__(self, folder: Path, settings: KeywordSettings) -> None:
        self.folder = folder
        self.settings = settings

    @cached_property
    def _stemmer(self):
        if self.settings.stemmer is None:
            return None
        import Stemmer

        return Stemmer.Stemmer(self.settings.stemmer).stemWords

    def tokenize(self, texts: list[str]):
        import bm25s

        return bm25s.tokenize(
            texts, stopwords=self.settings.stopwords, stemmer=self._stemmer, show_progress=False
        )

    def build(self, texts: list[str]) -> None:
        """Index ``texts`` (passage i is row i) and save the index without pickle."""
        import bm25s

        retriever = bm25s.BM25(k1=self.settings.k1, b=self.settings.b, method="lucene")
        retriever.index(self.tokenize(texts), show_progress=False)
        self.folder.mkdir(parents=True, exist_ok=True)
        retriever.save(str(self.folder), allow_pickle=False, show_progress=False)

    @cached_property
    def retriever(self):
        import bm25s

        return bm25s.BM25.load(str(self.folder), mmap=True, allow_pickle=False, show_progress=False)

    def search(self, query: str, *, k: int) -> list[tuple[int, float]]:
        """The ``k`` best passages for ``query`` by BM25 as (passage id, score > 0)."""
        tokens = self.tokenize([query])
        if not tokens.ids or not tokens.ids[0]:
            return []
        size = self.retriever.scores["num_docs"]
        ids, scores = self.retriever.retrieve(tokens, k=min(k, size), show_progress=False, n_threads=1)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if s > 0]
