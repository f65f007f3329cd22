"""Incremental builds: only new texts are embedded, and the result equals a full build.

Builds run in-process with the session's embedder, except where the test is about what a
fresh process imports (the "up to date" path must not load the model).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic import bare_body, headline, news_corpus, record, sentence, write_corpus

from indexer import store
from indexer.build import build_index
from indexer.chunking import ChunkSettings
from indexer.compare import compare_indexes
from indexer.errors import IndexFormatError
from indexer.store import StoredIndex

ROOT = Path(__file__).resolve().parents[1]
STRICT = 1e-5
"""The issue's bound on vector differences between an incremental and a full build."""


def embedded_texts(index: Path) -> set[str]:
    return {p.embed_text for p in StoredIndex.open(index).passages()}


def vectors(index: Path) -> np.ndarray:
    stored = StoredIndex.open(index)
    return stored.vectors.reconstruct_n(0, stored.count)


def assert_same_as_full(corpus: Path, index: Path, embedder, scratch: Path) -> None:
    """``index`` equals a full build of ``corpus`` (same passages and ids, vectors within 1e-5)."""
    full = scratch / f"full-{len(list(scratch.iterdir()))}"
    build_index(corpus=corpus, index=full, embedder=embedder, full=True)
    assert compare_indexes(expected=full, actual=index) == []
    assert np.abs(vectors(full) - vectors(index)).max(initial=0.0) <= STRICT
    shutil.rmtree(full)


# --- random sequence of edits ---------------------------------------------------------------


def mutate(rng: random.Random, files: dict[str, str], counter: list[int]) -> str:
    """Apply one random change to ``files``; return its name (for failure messages)."""
    names = sorted(files)
    records = [n for n in names if "\ncategory: " in files[n]]
    op = rng.choice(["add", "add_body", "edit_body", "edit_title", "metadata", "delete", "rename", "duplicate",
                     "touch", "break", "url"])
    counter[0] += 1
    number = 1000 + counter[0]
    if op == "add" or not records:
        files[f"r{number:04d}.md"] = record(rng, number, related=rng.random() < 0.3)
    elif op == "add_body":
        target = files[rng.choice(records)]
        day = int(target.split('publishedDateTime: "2024-05-')[1][:2])
        echo = json.loads(target.split("excerpt: ", 1)[1].split("\n", 1)[0])
        files[f"b{number:04d}.txt"] = bare_body(rng, day=day, echo=echo)
    elif op == "edit_body":
        name = rng.choice(names)
        text = files[name]
        old = rng.choice([s for s in text.replace("\n", " ").split(". ") if len(s) > 30] or [text.strip()[:20]])
        files[name] = text.replace(old, sentence(rng).rstrip("."), 1)
    elif op == "edit_title":
        name = rng.choice(records)
        old = files[name].split("title: ", 1)[1].split("\n", 1)[0]
        files[name] = files[name].replace(f"title: {old}", f"title: {json.dumps(headline(rng))}", 1)
    elif op == "metadata":
        name = rng.choice(records)
        text = files[name]
        old_category = text.split("category: ", 1)[1].split("\n", 1)[0]
        text = text.replace(f"category: {old_category}", f"category: changed-{number}", 1)
        files[name] = text.replace("topics: [", f'topics: ["Topic {number}", ', 1)
    elif op == "url":
        name = rng.choice(records)
        files[name] = files[name].replace("/story-", f"/moved-{number}-story-", 1)
    elif op == "delete" and len(names) > 3:
        del files[rng.choice(names)]
    elif op == "rename":
        name = rng.choice(names)
        files[f"{name[0]}{number:04d}{name[5:]}"] = files.pop(name)
    elif op == "duplicate":
        name = rng.choice(names)
        files[f"copy-{number}-{name}"] = files[name]
    elif op == "break":
        files[f"broken-{number}.md"] = '---\ntitle: "never closed\n---\n'
    return op


@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("SEMINDEX_TEST_SEEDS", "1").split(",")])
def test_random_edit_sequence_matches_a_full_build_each_step(embedder, tmp_path: Path, seed: int) -> None:
    """Random add/edit/rename/copy/delete/break steps; after each, the incremental index equals
    a full build of the same corpus. More seeds: SEMINDEX_TEST_SEEDS=1,2,3."""
    rng = random.Random(seed)
    files = news_corpus(10, seed=seed)
    corpus, index, scratch = tmp_path / "corpus", tmp_path / "index", tmp_path / "scratch"
    scratch.mkdir()
    write_corpus(corpus, files)
    build_index(corpus=corpus, index=index, embedder=embedder)
    counter = [0]
    for step in range(7):
        ops = [mutate(rng, files, counter) for _ in range(rng.randint(1, 3))]
        write_corpus(corpus, files)
        before = embedded_texts(index)
        report = build_index(corpus=corpus, index=index, embedder=embedder)
        after = embedded_texts(index)
        if report.unchanged:
            assert after == before, ops
            continue
        # only passages whose embedded text is new were embedded (the full build proves they all were)
        new = [p for p in StoredIndex.open(index).passages() if p.embed_text not in before]
        assert report.embedded <= len(new), (step, ops, report)
        assert report.reused + report.embedded == report.passages, (step, ops, report)
        assert_same_as_full(corpus, index, embedder, scratch)
    assert len(list(index.glob("gen-*"))) <= 2
    assert not list(index.glob(".building-*")) and not list(index.glob(".CURRENT.*"))


# --- specific changes -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_template(embedder, tmp_path_factory):
    files = news_corpus(10, seed=7)
    root = tmp_path_factory.mktemp("small")
    corpus = write_corpus(root / "corpus", files)
    build_index(corpus=corpus, index=root / "index", embedder=embedder)
    return files, root


@pytest.fixture
def small(small_template, tmp_path: Path):
    """A private copy of a 10-file corpus and its index: (files, corpus, index)."""
    files, root = small_template
    shutil.copytree(root, tmp_path / "small")
    return dict(files), tmp_path / "small" / "corpus", tmp_path / "small" / "index"


def test_metadata_only_change_updates_articles_without_embedding(embedder, small) -> None:
    files, corpus, index = small
    name = "r0002.md"
    old_category = files[name].split("category: ", 1)[1].split("\n", 1)[0]
    files[name] = files[name].replace(f"category: {old_category}", "category: obituaries").replace(
        "topics: [", 'topics: ["Obituaries", ', 1)
    write_corpus(corpus, files)
    report = build_index(corpus=corpus, index=index, embedder=embedder)
    assert not report.unchanged and report.embedded == 0 and report.reused == report.passages
    assert report.changes == {"added": 0, "changed": 1, "removed": 0}
    stored = StoredIndex.open(index)
    key = files[name].split('webUrl: "', 1)[1].split('"', 1)[0]
    assert stored.articles[key].category == "obituaries"
    assert stored.articles[key].topics[0] == "Obituaries"


def test_new_url_moves_passages_to_the_new_article_without_embedding(embedder, small) -> None:
    files, corpus, index = small
    old = files["r0004.md"].split('webUrl: "', 1)[1].split('"', 1)[0]
    files["r0004.md"] = files["r0004.md"].replace(old, "https://example.com/moved")
    write_corpus(corpus, files)
    report = build_index(corpus=corpus, index=index, embedder=embedder)
    assert report.embedded == 0
    stored = StoredIndex.open(index)
    assert old not in stored.articles and "https://example.com/moved" in stored.articles
    assert {p.article for p in stored.passages() if p.sources[0].file == "r0004.md"} == {
        "https://example.com/moved"}


def test_new_title_re_embeds_only_the_passages_that_embed_it(embedder, small) -> None:
    files, corpus, index = small
    old = files["r0001.md"].split("title: ", 1)[1].split("\n", 1)[0]
    files["r0001.md"] = files["r0001.md"].replace(old, '"Completely new headline for the story"')
    write_corpus(corpus, files)
    report = build_index(corpus=corpus, index=index, embedder=embedder)
    # the title passage, and the excerpt, publisher and date passages that embed the title
    assert report.embedded == 4, report
    stored = StoredIndex.open(index)
    key = files["r0001.md"].split('webUrl: "', 1)[1].split('"', 1)[0]
    assert stored.articles[key].title == "Completely new headline for the story"


def test_deleted_file_drops_its_passages_and_count_matches_vectors(embedder, small) -> None:
    files, corpus, index = small
    del files["r0003.md"]
    write_corpus(corpus, files)
    report = build_index(corpus=corpus, index=index, embedder=embedder)
    assert report.changes["removed"] == 1 and report.embedded == 0
    stored = StoredIndex.open(index)
    assert all(s.file != "r0003.md" for p in stored.passages() for s in p.sources)
    assert stored.vectors.ntotal == stored.count == len(stored.passages()) == len(stored.offsets) - 1
    assert "r0003.md" not in stored.manifest["files"]


def test_reingesting_a_copy_adds_a_source_not_a_duplicate(embedder, small) -> None:
    files, corpus, index = small
    count = StoredIndex.open(index).count
    files["copy-of-r0002.md"] = files["r0002.md"]
    write_corpus(corpus, files)
    for _ in range(2):
        report = build_index(corpus=corpus, index=index, embedder=embedder)
        assert report.passages == count and report.embedded == 0
    texts = [p.embed_text for p in StoredIndex.open(index).passages()]
    assert len(texts) == len(set(texts))
    sources = [s.file for p in StoredIndex.open(index).passages() for s in p.sources]
    assert sources.count("copy-of-r0002.md") == sources.count("r0002.md") > 0


def test_unchanged_corpus_is_up_to_date_and_leaves_the_index_alone(embedder, small) -> None:
    files, corpus, index = small
    live = store.live_generation(index)
    (corpus / "r0002.md").touch()  # a new mtime, the same bytes
    report = build_index(corpus=corpus, index=index, embedder=embedder)
    assert report.unchanged and report.generation == live.name and report.embedded == 0
    assert store.live_generation(index) == live


def test_changed_settings_rebuild_and_still_match_a_full_build(embedder, small, tmp_path: Path) -> None:
    files, corpus, index = small
    settings = ChunkSettings(max_tokens=32)
    report = build_index(corpus=corpus, index=index, embedder=embedder, settings=settings)
    assert not report.unchanged and report.reused > 0
    full = tmp_path / "full"
    build_index(corpus=corpus, index=full, embedder=embedder, settings=settings, full=True)
    assert compare_indexes(expected=full, actual=index) == []
    again = build_index(corpus=corpus, index=index, embedder=embedder)  # no settings: the index's own are kept
    assert again.unchanged and again.embedded == 0
    assert StoredIndex.open(index).manifest["chunking"]["max_tokens"] == 32


def test_full_rebuild_embeds_everything(embedder, small) -> None:
    files, corpus, index = small
    report = build_index(corpus=corpus, index=index, embedder=embedder, full=True)
    assert report.full and not report.unchanged and report.reused == 0 and report.embedded == report.passages


def _edit_manifest(index: Path, change) -> None:
    path = store.live_generation(index) / store.MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def test_index_of_another_model_is_refused_unless_full(embedder, small) -> None:
    files, corpus, index = small
    _edit_manifest(index, lambda m: m["model"].update(id="sentence-transformers/all-mpnet-base-v2"))
    (corpus / "new.md").write_text(record(random.Random(3), 999), encoding="utf-8")
    with pytest.raises(IndexFormatError, match="--full") as error:
        build_index(corpus=corpus, index=index, embedder=embedder)
    assert "all-mpnet-base-v2" in str(error.value) and "\n" not in str(error.value)
    report = build_index(corpus=corpus, index=index, embedder=embedder, full=True)
    assert report.full and StoredIndex.open(index).manifest["model"]["id"] == embedder.ref.id


def test_changed_weights_re_embed_everything_with_a_warning(embedder, small) -> None:
    files, corpus, index = small
    _edit_manifest(index, lambda m: (m["model"].update(fingerprint="sha256:0"),
                                     m["model_identity"].update(fingerprint="sha256:0")))
    warnings: list[str] = []
    report = build_index(corpus=corpus, index=index, embedder=embedder, warn=warnings.append)
    assert report.full and report.embedded == report.passages
    assert any("weights" in w for w in warnings), warnings


def test_corrupt_live_generation_is_rebuilt_in_full_with_a_warning(embedder, small) -> None:
    files, corpus, index = small
    vectors_file = store.live_generation(index) / store.VECTORS
    vectors_file.write_bytes(vectors_file.read_bytes()[:100])
    with pytest.raises(IndexFormatError, match="rebuild"):
        StoredIndex.open(index)
    warnings: list[str] = []
    report = build_index(corpus=corpus, index=index, embedder=embedder, warn=warnings.append)
    assert report.full and not report.unchanged
    assert any("cannot be reused" in w and "corrupt" in w for w in warnings), warnings
    StoredIndex.open(index, verify=True)


def test_hnsw_vectors_are_reused_exactly(embedder, small, tmp_path: Path) -> None:
    files, corpus, index = small
    hnsw = tmp_path / "hnsw"
    build_index(corpus=corpus, index=hnsw, embedder=embedder, factory="HNSW32,Flat")
    files["r0001.md"] = files["r0001.md"].replace("category: ", "category: x", 1)
    write_corpus(corpus, files)
    report = build_index(corpus=corpus, index=hnsw, embedder=embedder, factory="HNSW32,Flat")
    assert report.embedded == 0 and report.reused == report.passages
    assert np.abs(vectors(hnsw) - vectors(index)).max() <= STRICT


def test_tokenizer_json_counts_like_the_model_tokenizer(embedder) -> None:
    """Chunking reads tokenizer.json (no torch): it must tokenize as the model's own tokenizer."""
    from indexer.build_model import BuildModel

    tokens = BuildModel(embedder=embedder).tokens
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").iterdir())]
    texts += ["naïve café — “quoted” text…", "東京で新しい美術館", "🚀 launch\tday\n\nx" * 3, "", " "]
    for text in texts:
        expected = embedder.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        assert tokens.count(text) == len(expected["input_ids"])
        assert [tuple(o) for o in tokens.offsets(text)] == [tuple(o) for o in expected["offset_mapping"]]


# --- in a fresh process ---------------------------------------------------------------------

PROBE = """
import json, sys, time
from pathlib import Path
began = time.perf_counter()
from indexer.build import build_index
report = build_index(corpus=Path(sys.argv[1]), index=Path(sys.argv[2]))
heavy = sorted({'torch', 'transformers', 'sentence_transformers'} & set(sys.modules))
print(json.dumps({"unchanged": report.unchanged, "embedded": report.embedded, "reused": report.reused,
                  "seconds": report.seconds, "total": time.perf_counter() - began, "heavy": heavy}))
"""


def probe(corpus: Path, index: Path, **env: str) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "SEMINDEX_NO_ONNX"}
    result = subprocess.run([sys.executable, "-c", PROBE, str(corpus), str(index)], capture_output=True, text=True,
                            cwd=ROOT, env={**environment, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_incremental_builds_in_a_fresh_process_never_import_torch(embedder, small, tmp_path: Path) -> None:
    """Up to date: no model at all, well under a second. Metadata only: tokenizer.json, no
    model. Changed text: the model's ONNX export embeds it; the result still equals a full
    build within 1e-5."""
    from indexer.onnx_export import ensure_export

    ensure_export(model_id=embedder.ref.id, model_path=embedder.ref.local_path, fingerprint=embedder.fingerprint,
                  max_seq_length=embedder.max_seq_length)
    files, corpus, index = small
    unchanged = probe(corpus, index)
    assert unchanged["unchanged"] and unchanged["heavy"] == [], unchanged
    assert unchanged["seconds"] < 1.0, unchanged  # typically ~0.03 s after start-up
    files["r0005.md"] = files["r0005.md"].replace("category: ", "category: y", 1)
    del files["r0006.md"]
    write_corpus(corpus, files)
    changed = probe(corpus, index)
    assert not changed["unchanged"] and changed["embedded"] == 0 and changed["heavy"] == [], changed
    files["r0007.md"] = files["r0007.md"].rstrip("\n") + " The ferry operator welcomed a brand new sentence.\n"
    write_corpus(corpus, files)
    edited = probe(corpus, index)
    assert 0 < edited["embedded"] <= 2 and edited["heavy"] == [], edited
    assert_same_as_full(corpus, index, embedder, tmp_path)


def test_no_pickle_anywhere(small) -> None:
    """Every file of a generation reads without pickle; no source file enables it."""
    import sqlite3

    import faiss

    files, corpus, index = small
    generation = store.live_generation(index)
    names = set()
    for path in generation.rglob("*"):
        if not path.is_file():
            continue
        names.add(path.name)
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        elif path.suffix == ".faiss":
            faiss.read_index(str(path))
        elif path.suffix == ".sqlite":
            from indexer.metadata import MetadataStore

            assert MetadataStore(path).query("PRAGMA integrity_check") == [("ok",)]
        else:
            raise AssertionError(f"unexpected file {path}")
    assert {"vectors.faiss", "passages.jsonl", "passages.offsets.npy", "articles.json", "manifest.json",
            "linkvectors.npy", "linkvectors.json", "metadata.sqlite"} <= names
    for source in [*(ROOT / "indexer").glob("*.py"), *(ROOT / "query").glob("*.py")]:
        text = source.read_text(encoding="utf-8")
        assert "import pickle" not in text and "allow_pickle=True" not in text, source


def test_corpus_changes_tell_a_stale_index(embedder, small) -> None:
    files, corpus, index = small
    assert StoredIndex.open(index).corpus_changes() == {"added": [], "changed": [], "removed": []}
    files["r0001.md"] = files["r0001.md"].replace("category: ", "category: z", 1)
    del files["r0002.md"]
    files["new.txt"] = "A new headline\n\nA new body sentence.\n"
    write_corpus(corpus, files)
    assert StoredIndex.open(index).corpus_changes() == {"added": ["new.txt"], "changed": ["r0001.md"],
                                                       "removed": ["r0002.md"]}
    build_index(corpus=corpus, index=index, embedder=embedder)
    assert StoredIndex.open(index).corpus_changes() == {"added": [], "changed": [], "removed": []}


@pytest.mark.parametrize("change", [False, True], ids=["up-to-date", "changed"])
def test_leftovers_of_killed_builds_are_removed_by_the_next_build(embedder, small, change: bool) -> None:
    files, corpus, index = small
    live = store.live_generation(index)
    (index / ".building-gen-000042-12345").mkdir()
    (index / ".building-gen-000042-12345" / "vectors.faiss").write_bytes(b"half")
    (index / f".{store.POINTER}.12345").write_text("gen-0", encoding="utf-8")
    shutil.copytree(live, index / "gen-000099")  # renamed into place, killed before the switch
    if change:
        files["r0001.md"] = files["r0001.md"].replace("category: ", "category: w", 1)
        write_corpus(corpus, files)
    report = build_index(corpus=corpus, index=index, embedder=embedder)
    assert report.unchanged is not change
    names = sorted(p.name for p in index.iterdir())
    expected = sorted({".lock", store.POINTER, live.name, report.generation})
    assert names == expected, names


def test_first_build_keeps_a_generation_found_without_its_pointer(embedder, small) -> None:
    """A generation copied in (or committed) without CURRENT is not deleted by the first build."""
    files, corpus, index = small
    (index / store.POINTER).unlink()
    found = sorted(p.name for p in index.glob("gen-*"))
    report = build_index(corpus=corpus, index=index, embedder=embedder)
    assert StoredIndex.open(index).generation.name == report.generation
    assert (index / found[-1]).is_dir()


def test_the_default_model_named_by_its_folder_is_the_default_model(embedder, small, tmp_path: Path) -> None:
    """``--model`` given the folder of the bundled default (or a link to it) names the model an
    index of the default records by its hub id; any other folder is still another model."""
    from indexer.embedder import DEFAULT_MODEL, default_model_folder, resolve_model
    from query.searcher import Searcher

    files, corpus, index = small
    folder = default_model_folder()
    (tmp_path / "link").symlink_to(folder)
    for name in (str(folder), str(tmp_path / "link")):
        assert resolve_model(name) == resolve_model(None) == embedder.ref
        assert build_index(corpus=corpus, index=index, model=name).unchanged
        Searcher(StoredIndex.open(index), model=name)
    other = tmp_path / "other"  # the same files in another folder: not the default by path
    other.mkdir()
    for path in folder.iterdir():
        (other / path.name).symlink_to(path)
    assert resolve_model(str(other)).id == str(other.resolve()) != DEFAULT_MODEL
    (corpus / "new.md").write_text(record(random.Random(3), 999), encoding="utf-8")
    for refused in (lambda: build_index(corpus=corpus, index=index, model=str(other)),
                    lambda: Searcher(StoredIndex.open(index), model=str(other))):
        with pytest.raises(IndexFormatError, match=f"built with model '{DEFAULT_MODEL}', not '{other.resolve()}'"):
            refused()
