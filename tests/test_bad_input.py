"""Bad corpus files that the error suite does not build: huge, vanishing, looping, unreadable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexer.build import build_index
from indexer.documents import parse_file
from indexer.errors import CorpusError, InputError, SemindexError
from indexer.store import StoredIndex

GOOD = "---\ntitle: A good record\nexcerpt: Open models are catching up with closed ones.\n---\n"


@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory, embedder):
    corpus = tmp_path_factory.mktemp("hostile") / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text(GOOD, encoding="utf-8")
    with (corpus / "huge.txt").open("w", encoding="utf-8") as handle:  # 50 MB of text
        line = "Open-source language models keep getting better every month. " * 16 + "\n"
        for _ in range(50 * 2**20 // len(line) + 1):
            handle.write(line)
    (corpus / "gone.txt").symlink_to(corpus / "deleted-before-it-was-read.txt")
    (corpus / "loop.txt").symlink_to(corpus / "loop2.txt")
    (corpus / "loop2.txt").symlink_to(corpus / "loop.txt")
    (corpus / "sub").mkdir()
    (corpus / "sub" / "back").symlink_to(corpus, target_is_directory=True)
    os.mkfifo(corpus / "pipe.txt")  # reading it would block forever
    (corpus / "zero.txt").symlink_to("/dev/zero")  # reading it would never end
    warnings: list[str] = []
    index = corpus.parent / "index"
    report = build_index(corpus=corpus, index=index, warn=warnings.append, embedder=embedder)
    return report, warnings, index


def test_huge_file_is_skipped_with_its_size(hostile_build):
    _, warnings, _ = hostile_build
    [line] = [w for w in warnings if w.startswith("huge.txt:")]
    assert "too large (50.0 MB" in line and "skipped" in line


def test_a_broken_symlink_is_skipped(hostile_build):
    _, warnings, _ = hostile_build
    [line] = [w for w in warnings if w.startswith("gone.txt:")]
    assert "is a broken symbolic link" in line


def test_a_pipe_or_device_is_skipped_unread(hostile_build):
    _, warnings, _ = hostile_build
    for name in ("pipe.txt", "zero.txt"):
        [line] = [w for w in warnings if w.startswith(f"{name}:")]
        assert "is not a regular file" in line


def test_raising_the_size_limit_indexes_the_file_it_skipped(write_corpus, tmp_path, embedder, monkeypatch):
    corpus = write_corpus({"good.txt": GOOD, "long.txt": "Ferries cross the bay every hour in summer.\n" * 40_000})
    monkeypatch.setenv("SEMINDEX_MAX_FILE_MB", "1")
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    monkeypatch.setenv("SEMINDEX_MAX_FILE_MB", "5")
    report = build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    assert not report.unchanged and report.files == 2


def test_symlink_loops_are_skipped(hostile_build):
    _, warnings, _ = hostile_build
    assert [w for w in warnings if w.startswith("loop.txt:")]
    assert [w for w in warnings if "symlink loop" in w]


def test_the_rest_is_indexed(hostile_build):
    report, _, index = hostile_build
    stored = StoredIndex.open(index)
    assert {s.file for p in stored.passages() for s in p.sources} == {"good.txt"}
    assert report.files == 1


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text(GOOD, encoding="utf-8")
    real = Path.read_bytes

    def deny(self):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(InputError, match=r"secret.txt: cannot be read \(permission denied\)"):
        parse_file(path, "secret.txt")



def test_empty_front_matter_is_a_bare_body(write_corpus, tmp_path, embedder):
    corpus = write_corpus({"good.txt": GOOD, "kites.md": "---\n# nothing here\n---\nKites fly over the beach in Brighton.\n",
                           "gulls.md": "---\n{}\n---\nGulls steal chips on the pier.\n"})
    report = build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    assert report.files == 3
    stored = StoredIndex.open(tmp_path / "index")
    for name, text in (("kites.md", "Kites fly over the beach in Brighton."), ("gulls.md", "Gulls steal chips on the pier.")):
        [passage] = [p for p in stored.passages() if p.sources[0].file == name]
        assert passage.text == text and passage.article == f"file:{name}"


def test_byte_order_mark_before_a_bare_body_and_its_date(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_text("\ufeffdate 2021-03-04\n\nEleutherAI released a new model.\n\nIt is open.\n", encoding="utf-8")
    parsed = parse_file(path, "bom.txt")
    assert parsed.body_date == "2021-03-04"
    assert all(not parsed.text[s.start : s.end].startswith("\ufeff") for s in parsed.segments)


def test_unclosed_front_matter_with_trailing_space_is_refused(tmp_path):
    path = tmp_path / "open.md"
    path.write_text("--- \ntitle: x\nKites.\n", encoding="utf-8")
    with pytest.raises(InputError, match="no closing '---' line"):
        parse_file(path, "open.md")


@pytest.mark.parametrize(("factory", "problem"), [
    ("Bogus123", "could not parse index string"),
    ("PQ7", "multiple of the number of subquantizers"),
    ("IVF64,Flat", "cannot be trained on 1 passages"),
])
def test_bad_faiss_factory_is_one_line_and_leaves_no_index(write_corpus, tmp_path, embedder, factory, problem):
    corpus = write_corpus({"good.txt": "Kites fly over the beach in Brighton.\n"})
    with pytest.raises(SemindexError, match=problem) as caught:
        build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder, factory=factory)
    assert "\n" not in str(caught.value) and ".cpp" not in str(caught.value)
    assert not list((tmp_path / "index").glob("gen-*"))


def test_corpus_without_a_keyword_is_one_line(write_corpus, tmp_path, embedder):
    corpus = write_corpus({"stop.txt": "The and of a.\n"})
    with pytest.raises(CorpusError, match=r"corpus: no passage has a word to index"):
        build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)


@pytest.mark.parametrize("setting", ["abc", "0", "-1", "inf", "nan"])
def test_bad_size_limit_setting_is_one_line(tmp_path, monkeypatch, setting):
    path = tmp_path / "good.txt"
    path.write_text(GOOD, encoding="utf-8")
    monkeypatch.setenv("SEMINDEX_MAX_FILE_MB", setting)
    with pytest.raises(CorpusError, match=r"SEMINDEX_MAX_FILE_MB=.*expected a positive number of megabytes"):
        parse_file(path, "good.txt")


def test_a_nul_byte_anywhere_makes_a_file_binary(tmp_path):
    path = tmp_path / "late.txt"
    text = GOOD + "Open models keep improving.\n" * 400  # past the first 8 KB
    path.write_bytes(text.encode() + b"\x00tail")
    with pytest.raises(InputError, match=rf"late.txt: is a binary file, not text \(a NUL byte at byte {len(text.encode())}\)"):
        parse_file(path, "late.txt")


def test_a_second_path_to_a_folder_is_not_called_a_loop(write_corpus, tmp_path, embedder):
    corpus = write_corpus({"real/a.txt": "Kites fly over the beach in Brighton.\n"})
    (corpus / "reallink").symlink_to("real", target_is_directory=True)
    (corpus / "real" / "up").symlink_to("..", target_is_directory=True)
    warnings: list[str] = []
    report = build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder, warn=warnings.append)
    assert report.files == 1
    assert "reallink: skipped (a symlink to real, already read)" in warnings
    assert "real/up: skipped (symlink loop)" in warnings


def test_a_file_name_that_is_not_utf8_is_skipped(write_corpus, tmp_path, embedder):
    corpus = write_corpus({"good.txt": GOOD})
    (corpus / os.fsdecode(b"ferry-\xff.txt")).write_text("Ferries cross the bay every hour.\n", encoding="utf-8")
    warnings: list[str] = []
    report = build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder, warn=warnings.append)
    assert report.files == 1
    assert "ferry-\\xff.txt: skipped (its name is not valid UTF-8, so it cannot be cited)" in warnings


def test_a_factory_faiss_cannot_fill_is_one_line(write_corpus, tmp_path, embedder):
    corpus = write_corpus({"good.txt": GOOD})
    with pytest.raises(SemindexError, match=r"^FAISS factory 'IDMap,Flat' cannot index \d+ passages: add does not make sense"):
        build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder, factory="IDMap,Flat")
    assert not (tmp_path / "index" / "CURRENT").exists()  # no index was published
