"""Deterministic synthetic news corpora for the incremental, crash and concurrency tests.

Records with YAML front matter (title, excerpt, date, URL, publisher, topics, sometimes a
``related`` entry) and bare dated bodies, some of which link to a same-day record.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SUBJECTS = [
    "The city council", "The harbour authority", "A regional court", "The central bank", "Local farmers",
    "The football club", "Researchers at the university", "The ferry operator", "The health ministry",
    "Teachers in the capital", "The railway company", "A group of residents", "The airport", "The museum",
    "Fishermen on the coast", "The energy regulator", "The mayor", "Nurses at the hospital",
]
VERBS = [
    "approved", "rejected", "postponed", "announced", "criticised", "celebrated", "questioned", "delayed",
    "funded", "opposed", "welcomed", "reviewed",
]
OBJECTS = [
    "a new bridge over the river", "higher interest rates", "the floating solar farm", "a ban on night flights",
    "the budget for next year", "plans for a tram line", "a strike over pay", "the new vaccine campaign",
    "a museum of maritime history", "cuts to the bus network", "a wind farm off the coast", "longer opening hours",
    "a tax on tourist stays", "the merger of two schools", "a flood barrier", "electric ferries",
]
DETAILS = [
    "after a long debate", "despite protests outside", "on Tuesday", "citing rising costs", "by a narrow vote",
    "following a public consultation", "late on Friday", "with support from the opposition",
    "after months of delays", "amid concerns about safety",
]
CATEGORIES = ["news", "business", "science", "sport", "culture"]
TOPICS = ["Energy", "Transport", "Health", "Education", "Economy", "Environment"]


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(DETAILS)}."


def headline(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"


def record(rng: random.Random, number: int, *, sentences: int = 3, day: int | None = None,
           related: bool = False, site: str = "example.com") -> str:
    """A front matter record: its own fields, a body, and maybe a related entry."""
    day = rng.randint(1, 28) if day is None else day
    lines = [
        "---",
        f"title: {json.dumps(headline(rng))}",
        f"excerpt: {json.dumps(sentence(rng))}",
        f"category: {rng.choice(CATEGORIES)}",
        f"publishedDateTime: \"2024-05-{day:02d}T08:00:00Z\"",
        f"webUrl: \"https://{site}/2024/05/{day:02d}/story-{number}\"",
        "provider:",
        f"  name: {rng.choice(['Harbour Herald', 'Valley Times', 'Coast Courier'])}",
        f"topics: {json.dumps(rng.sample(TOPICS, 2))}",
    ]
    if related:
        lines += [
            "related:",
            f"  - title: {json.dumps(headline(rng))}",
            f"    excerpt: {json.dumps(sentence(rng))}",
            f"    webUrl: \"https://other.example.org/related-{number}\"",
            f"    publishedDateTime: \"2024-05-{day:02d}T09:00:00Z\"",
        ]
    lines.append("---")
    body = " ".join(sentence(rng) for _ in range(sentences))
    return "\n".join(lines) + "\n" + body + "\n"


def bare_body(rng: random.Random, *, day: int, echo: str | None = None, paragraphs: int = 2) -> str:
    """A scraped body dated ``day``; ``echo`` (a record's excerpt) makes it link to that record."""
    parts = [f"date 2024-05-{day:02d}", headline(rng)]
    if echo:
        parts.append(echo + " " + sentence(rng))
    parts += [" ".join(sentence(rng) for _ in range(2)) for _ in range(paragraphs)]
    return "\n\n".join(parts) + "\n"


def news_corpus(count: int, *, seed: int = 0, sentences: int = 3, site: str = "example.com") -> dict[str, str]:
    """``count`` files: mostly records, every tenth a bare body echoing a same-day record."""
    rng = random.Random(seed)
    files: dict[str, str] = {}
    for number in range(count):
        if number % 10 == 9:
            target = files[f"r{number - 1:04d}.md"]
            day = int(target.split("publishedDateTime: \"2024-05-")[1][:2])
            excerpt = json.loads(target.split("excerpt: ", 1)[1].split("\n", 1)[0])
            files[f"b{number:04d}.txt"] = bare_body(rng, day=day, echo=excerpt)
        else:
            files[f"r{number:04d}.md"] = record(rng, number, sentences=sentences, related=number % 7 == 3, site=site)
    return files


def write_corpus(folder: Path, files: dict[str, str]) -> Path:
    """Make ``folder`` hold exactly ``files`` (others removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.name not in files:
            path.unlink()
    for name, text in files.items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return folder


def brief(rng: random.Random) -> str:
    """A short bare body: a headline and one sentence (two passages)."""
    return f"{headline(rng)}\n\n{sentence(rng)}\n"


def brief_corpus(count: int, *, seed: int = 0) -> dict[str, str]:
    """``count`` small files, cheap to embed: briefs, and every tenth a one-sentence record."""
    rng = random.Random(seed)
    return {
        (f"r{number:04d}.md" if number % 10 == 0 else f"n{number:04d}.txt"):
            (record(rng, number, sentences=1) if number % 10 == 0 else brief(rng))
        for number in range(count)
    }


def search_snapshot(index: Path, queries: list[str], query_vectors, *, k: int = 5) -> list:
    """What a reader gets from ``index``: for each query, the dense and the keyword top ``k`` as
    (passage id, text, first cited file), read from one verified generation, plus its name."""
    from indexer.keyword import KEYWORD_DIR, KeywordIndex, KeywordSettings
    from indexer.store import StoredIndex

    stored = StoredIndex.open(index, verify=True)
    assert stored.vectors.ntotal == stored.count == len(stored.offsets) - 1
    keyword = KeywordIndex(stored.generation / KEYWORD_DIR, KeywordSettings.from_dict(stored.manifest["keyword"]))
    results: list = [stored.generation.name]
    for query, vector in zip(queries, query_vectors):
        _, ids = stored.vectors.search(vector.reshape(1, -1), k)
        dense = [int(i) for i in ids[0] if i >= 0]
        sparse = [i for i, _ in keyword.search(query, k=k)]
        for ranking in (dense, sparse):
            hits = []
            for number in ranking:
                passage = stored.passage(number)
                hits.append((number, passage.text, passage.sources[0].file))
            results.append(hits)
    return results
