"""The query path's encoder: a question asked again is not embedded again."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from indexer.store import StoredIndex
from query.encoder import QueryEncoder

INDEX = Path(__file__).resolve().parent.parent / "index"


def test_a_question_asked_again_is_not_embedded_again() -> None:
    """Two requests answered side by side (a search, then the answer's reuse of its vector)
    each embed their question once, and get the same vector again."""
    encoder = QueryEncoder(StoredIndex.open(INDEX))
    model = encoder.model
    embedded: list[str] = []
    encode = model.encode
    model.encode = lambda texts, **kwargs: (embedded.extend(texts), encode(texts, **kwargs))[1]
    questions = ["Who runs EleutherAI?", "What did Google show at I/O?"]
    first, second = threading.Barrier(2), threading.Barrier(2)
    vectors: dict[str, list] = {}

    def ask(question: str) -> None:
        vectors[question] = [encoder.question(question)]
        first.wait()  # both threads have embedded their question before either asks again
        vectors[question].append(encoder.question(question))
        second.wait()

    threads = [threading.Thread(target=ask, args=(question,)) for question in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(embedded) == sorted(encoder.prompts.question(q) for q in questions)  # each once
    for question in questions:
        again = vectors[question]
        assert np.array_equal(again[0], again[1])
        assert np.array_equal(again[0], encode([encoder.prompts.question(question)])[0])
