"""Readers never block and never see a mix while builds run; two builders never overlap.

Each corpus version names its files ``e<version>-…`` and its URLs ``…/e<version>/…``, so
a reader can tell whether everything it read came from one generation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from synthetic import brief_corpus, write_corpus

from indexer import store
from indexer.build import build_index
from indexer.generation import build_lock
from indexer.errors import SemindexError
from indexer.keyword import KEYWORD_DIR, KeywordIndex, KeywordSettings
from indexer.store import StoredIndex

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["interest rates", "strike over pay", "electric ferries"]


def version_corpus(version: int, count: int = 60) -> dict[str, str]:
    """The same texts each version (so builds reuse vectors and are quick); names and URLs
    carry the version, and a few texts change so every build has something to embed."""
    files = brief_corpus(count, seed=11)
    out = {}
    for name, text in files.items():
        text = text.replace("https://example.com/", f"https://example.com/e{version}/")
        out[f"e{version}-{name}"] = text
    out[f"e{version}-extra.txt"] = f"Edition {version} of the bulletin\n\nThe museum reopened edition {version}.\n"
    return out


def read_one_generation(index: Path, query_vector) -> tuple[str, int]:
    """Open the live generation and read it through, checking it is whole and of one version."""
    stored = StoredIndex.open(index)
    versions: set[str] = set()
    assert stored.vectors.ntotal == stored.count == len(stored.offsets) - 1
    keyword = KeywordIndex(stored.generation / KEYWORD_DIR, KeywordSettings.from_dict(stored.manifest["keyword"]))
    _, ids = stored.vectors.search(query_vector.reshape(1, -1), 5)
    hits = [int(i) for i in ids[0] if i >= 0] + [i for q in QUERIES for i, _ in keyword.search(q, k=5)]
    assert hits and all(0 <= i < stored.count for i in hits)
    for number in hits:
        passage = stored.passage(number)
        versions.update(source.file.split("-", 1)[0] for source in passage.sources)
    versions.update(name.split("-", 1)[0] for name in stored.manifest["files"])
    versions.update(re.findall(r"/(e\d+)/", " ".join(stored.articles)))
    assert len(versions) == 1, (stored.generation, versions)
    return stored.generation.name, len(hits)


def test_queries_during_builds_always_see_one_whole_generation(embedder, tmp_path: Path) -> None:
    index = tmp_path / "index"
    corpora = [write_corpus(tmp_path / f"v{v}", version_corpus(v)) for v in range(4)]
    build_index(corpus=corpora[0], index=index, embedder=embedder)
    query_vector = embedder.encode(["council approves a new bridge"])[0]
    stop = threading.Event()
    failures: list[BaseException] = []
    seen: set[str] = set()
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                generation, _ = read_one_generation(index, query_vector)
                seen.add(generation)
                reads[0] += 1
            except BaseException as error:  # noqa: BLE001 - every failure is reported by the test
                failures.append(error)
                return

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for corpus in corpora[1:] + corpora[:1] + corpora[1:3]:
            build_index(corpus=corpus, index=index, embedder=embedder)
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, repr(failures[0])
    assert reads[0] >= 20 and len(seen) >= 3, (reads[0], seen)


def test_a_reader_in_another_process_never_fails_during_builds(embedder, tmp_path: Path) -> None:
    """The same from a separate process (its own GIL), reading in a tight loop."""
    index = tmp_path / "index"
    corpora = [write_corpus(tmp_path / f"v{v}", version_corpus(v, count=40)) for v in range(3)]
    build_index(corpus=corpora[0], index=index, embedder=embedder)
    code = (
        "import sys, time, numpy as np\n"
        "sys.path.insert(0, 'tests')\n"
        "from pathlib import Path\n"
        "from test_concurrency import read_one_generation\n"
        "index, vector = Path(sys.argv[1]), np.ones(384, dtype=np.float32) / np.sqrt(384)\n"
        "seen, reads, end = set(), 0, time.time() + 600\n"
        "while not Path(sys.argv[2]).exists() and time.time() < end:\n"
        "    seen.add(read_one_generation(index, vector)[0]); reads += 1\n"
        "print(reads, len(seen))\n"
    )
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", code, str(index), str(stop)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        for corpus in corpora[1:] + corpora[:1]:
            build_index(corpus=corpus, index=index, embedder=embedder)
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err[-3000:]
    reads, generations = map(int, out.split())
    assert reads >= 10 and generations >= 2, out


def test_second_builder_fails_with_a_clear_message_while_one_runs(embedder, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", version_corpus(1, count=10))
    index = tmp_path / "index"
    build_index(corpus=corpus, index=index, embedder=embedder)
    (corpus / "new.txt").write_text("A new headline\n\nSomething new happened today.\n", encoding="utf-8")
    before = store.live_generation(index)
    with build_lock(index):  # as a running build holds it
        with pytest.raises(SemindexError, match="another build is running"):
            build_index(corpus=corpus, index=index, embedder=embedder)
        env = {**os.environ, "SEMINDEX_NO_ONNX": "1"}
        result = subprocess.run([sys.executable, "-m", "query.cli", "build", str(corpus), "--index", str(index)],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "another build is running" in errors[0] and str(index) in errors[0]
        assert "Traceback" not in result.stderr
        # readers are not blocked by the lock
        assert StoredIndex.open(index).generation == before
    report = build_index(corpus=corpus, index=index, embedder=embedder)
    assert report.generation != before.name


def _lock_holders(path: Path) -> bool:
    """Is ``path`` flock-ed by some process? (from /proc/locks, without touching the lock)."""
    inode = path.stat().st_ino
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        pytest.skip("no /proc/locks")
    return any(line.split()[1] == "FLOCK" and line.split()[5].endswith(f":{inode}") for line in text.splitlines()
               if len(line.split()) > 5)


def test_two_builders_started_together_one_fails_cleanly(embedder, tmp_path: Path) -> None:
    """A real race: builder A holds the lock (it is loading the model to embed a changed text)
    when builder B starts; B fails at once with the lock message, A completes."""
    corpus_a = write_corpus(tmp_path / "a", version_corpus(1, count=10))
    corpus_b = write_corpus(tmp_path / "b", version_corpus(2, count=10))
    index = tmp_path / "index"
    build_index(corpus=corpus_a, index=index, embedder=embedder)
    (corpus_a / "e1-extra.txt").write_text("A changed headline\n\nA sentence never embedded before.\n", encoding="utf-8")
    env = {**os.environ, "SEMINDEX_NO_ONNX": "1"}
    command = [sys.executable, "-m", "query.cli", "build"]
    first = subprocess.Popen([*command, str(corpus_a), "--index", str(index)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not _lock_holders(index / ".lock") and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if first.poll() is not None:
        pytest.fail(f"builder A finished before it was seen holding the lock: {first.communicate()}")
    second = subprocess.run([*command, str(corpus_b), "--index", str(index)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2 and "another build is running" in second.stderr, second.stderr[-2000:]
    stored = StoredIndex.open(index)
    assert all(name.startswith("e1-") for name in stored.manifest["files"])
