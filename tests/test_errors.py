"""Errors through the real CLI (subprocesses, so exit codes and stderr are what a user sees).

Bad corpus files are skipped with one warning each; fatal problems (no corpus, nothing to
index, a corrupt or foreign index) are one ``error:`` line on stderr, exit code 2, no
traceback, and leave the previous index exactly as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer import store
from indexer.store import StoredIndex

SEMINDEX = shutil.which("semindex", path=str(Path(sys.executable).parent)) or shutil.which("semindex") or "semindex"
"""The installed console script (the venv's own when pytest runs from the venv)."""

GOOD = (
    "Council approves the river bridge\n"
    "\n"
    "The city council approved the new bridge over the river on Tuesday after a long debate about its cost. "
    "Work is due to begin in the autumn.\n"
)

# name -> (content, a word the warning must contain to say what is wrong)
BAD_FILES: dict[str, tuple[str | bytes, str]] = {
    "empty.txt": ("", "empty"),
    "blank.md": (" \n\n\t\n", "empty"),
    "binary.txt": (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;binary data", "binary"),
    "latin1.txt": ("Café au lait, déjà vu.\n".encode("latin-1"), "UTF-8"),
    "malformed_yaml.txt": ('---\ntitle: "never closed\nexcerpt: [a, b\n---\nSome body text.\n', "malformed"),
    "list_front_matter.txt": ("---\n- one\n- two\n---\nSome body text here.\n", "mapping"),
    "string_front_matter.txt": ("---\njust a sentence, not fields\n---\nSome body text here.\n", "mapping"),
    "title_list.txt": ("---\ntitle: [1, 2]\nexcerpt: fine\n---\n", "title"),
    "provider_number.txt": ("---\ntitle: Fine title\nprovider: 5\n---\n", "provider"),
    "bad_date.txt": ('---\ntitle: Fine title\npublishedDateTime: "not a date"\n---\n', "publishedDateTime"),
    "unclosed.txt": ("---\ntitle: Unclosed front matter\nexcerpt: The closing line never comes.\n", "closing"),
}

LONG_NAME = (
    "2024-05-17-city-council-votes-on-the-new-river-bridge-after-a-long-debate-about-rising-costs-"
    "and-the-closure-of-the-old-ferry-crossing-full-text.txt"
)
BRACKET_NAME = "notes [draft] v2.txt"
EXTRA_BAD_FILES: dict[str, str | bytes] = {
    # a long article-slug file name: its warning is longer than a wide terminal
    LONG_NAME: '---\ntitle: Fine title\npublishedDateTime: "not a date"\n---\n',
    # square brackets in a file name are text, not console markup
    BRACKET_NAME: "",
}


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``semindex ARGS`` as a user runs it, with stderr redirected (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    command = [SEMINDEX, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a fatal error prints: checks it is alone and not a traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (CURRENT, generations, lock) by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mixed_build(make_corpus):
    """One CLI build of a corpus holding every kind of bad file and one good file."""
    files = {"good.txt": GOOD, **{name: content for name, (content, _) in BAD_FILES.items()}, **EXTRA_BAD_FILES}
    corpus = make_corpus(files, name="mixed")
    index = corpus.parent / "index"
    return run_cli("build", corpus, "--index", index), index


@pytest.fixture
def good_index(bundled_index: Path, tmp_path: Path) -> Path:
    """A private copy of a good index, to damage."""
    copy = tmp_path / "index"
    shutil.copytree(bundled_index, copy)
    return copy


# --- bad files in a corpus ---------------------------------------------------------------


def test_build_with_bad_files_succeeds_and_indexes_the_good_one(mixed_build) -> None:
    result, index = mixed_build
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    stored = StoredIndex.open(index)
    assert set(stored.manifest["files"]) == {"good.txt"}
    assert stored.manifest["counts"]["skipped_files"] == len(BAD_FILES) + len(EXTRA_BAD_FILES)
    texts = [p.text for p in stored.passages()]
    assert "Council approves the river bridge" in texts
    assert any("approved the new bridge" in t for t in texts)
    assert {s.file for p in stored.passages() for s in p.sources} == {"good.txt"}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_bad_file_gets_its_own_warning(mixed_build, name: str) -> None:
    result, _ = mixed_build
    warnings = [line for line in result.stderr.splitlines() if line.startswith(f"warning: {name}:")]
    assert len(warnings) == 1, result.stderr
    assert "skipped" in result.stderr.split(f"warning: {name}:", 1)[1].split("warning:", 1)[0]
    other = [line for line in result.stderr.splitlines() if line.startswith("warning:") and name in line
             and not line.startswith(f"warning: {name}:")]
    assert not other, "a warning names only its own file"
    expected_word = BAD_FILES[name][1]
    whole = " ".join(result.stderr.split(f"warning: {name}:", 1)[1].split("warning:", 1)[0].split())
    assert expected_word.lower() in whole.lower(), whole
    assert "good.txt" not in result.stderr


def test_every_warning_is_exactly_one_line(mixed_build) -> None:
    result, _ = mixed_build
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("warning: ") for line in lines), lines
    assert len(lines) == len(BAD_FILES) + len(EXTRA_BAD_FILES), lines
    assert any(line.startswith(f"warning: {LONG_NAME}: ") and line.endswith("(skipped)") for line in lines), lines


def test_warning_names_a_file_with_brackets_verbatim(mixed_build) -> None:
    result, _ = mixed_build
    assert f"warning: {BRACKET_NAME}: is empty (skipped)" in result.stderr.splitlines(), result.stderr


def test_warning_quoting_markup_like_text_does_not_crash_the_build(write_corpus, tmp_path: Path) -> None:
    corpus = write_corpus({"markup_date.txt": '---\ntitle: Fine\npublishedDateTime: "[/b]"\n---\n'})
    result = run_cli("build", corpus, "--index", tmp_path / "index")
    line = error_line(result)  # nothing indexable: exit 2 after the warning
    assert str(corpus) in line
    assert "warning: markup_date.txt: field 'publishedDateTime' is not a date: '[/b]' (skipped)" in result.stderr


def test_impossible_unquoted_timestamp_skips_the_file(write_corpus, tmp_path: Path) -> None:
    corpus = write_corpus({"impossible_date.txt": "---\ntitle: Fine\npublishedDateTime: 2024-13-45T08:00:00Z\n---\n"})
    result = run_cli("build", corpus, "--index", tmp_path / "index")
    line = error_line(result)  # the only file is skipped, so nothing is indexable: exit 2
    assert str(corpus) in line
    warnings = [w for w in result.stderr.splitlines() if w.startswith("warning: impossible_date.txt:")]
    assert len(warnings) == 1 and "skipped" in warnings[0], result.stderr


def test_quoted_impossible_date_is_not_a_date(write_corpus) -> None:
    from indexer.documents import parse_file
    from indexer.errors import InputError

    corpus = write_corpus({"quoted.txt": '---\ntitle: Fine\npublishedDateTime: "2024-02-30"\n---\n'})
    with pytest.raises(InputError, match="publishedDateTime"):
        parse_file(corpus / "quoted.txt", "quoted.txt")


# --- fatal build errors leave the previous index untouched --------------------------------


def test_missing_corpus_folder(good_index: Path, tmp_path: Path) -> None:
    before = snapshot(good_index)
    missing = tmp_path / "no-such-corpus"
    result = run_cli("build", missing, "--index", good_index)
    line = error_line(result)
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert str(missing) in line
    assert snapshot(good_index) == before
    assert StoredIndex.open(good_index).count > 0


def test_corpus_with_only_bad_files(good_index: Path, write_corpus) -> None:
    before = snapshot(good_index)
    corpus = write_corpus({
        name: BAD_FILES[name][0] for name in ("empty.txt", "binary.txt", "latin1.txt", "unclosed.txt")
    }, name="bad-only")
    (corpus / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    result = run_cli("build", corpus, "--index", good_index)
    line = error_line(result)
    assert str(corpus) in line
    assert result.stderr.rstrip("\n").splitlines()[-1] == line, "the error is the last thing printed"
    for name in ("empty.txt", "binary.txt", "latin1.txt", "unclosed.txt", "picture.png"):
        assert f"warning: {name}:" in result.stderr
    assert snapshot(good_index) == before


def test_corpus_path_that_is_a_file(good_index: Path, write_corpus) -> None:
    before = snapshot(good_index)
    not_a_folder = write_corpus({"one.txt": GOOD}) / "one.txt"
    result = run_cli("build", not_a_folder, "--index", good_index)
    line = error_line(result)
    assert result.stderr.strip().count("\n") == 0
    assert str(not_a_folder) in line
    assert snapshot(good_index) == before


# --- corrupt or foreign indexes ----------------------------------------------------------


def _truncate_vectors(generation: Path) -> Path:
    path = generation / store.VECTORS
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _garbage_offsets(generation: Path) -> Path:
    path = generation / store.OFFSETS
    size = path.stat().st_size
    path.write_bytes((b"garbage!" * (size // 8 + 1))[:size])
    return path


def _wrong_length_offsets(generation: Path) -> Path:
    path = generation / store.OFFSETS
    np.save(path, np.arange(3, dtype=np.int64))
    return path


def _altered_passages(generation: Path) -> Path:
    path = generation / store.PASSAGES
    data = bytearray(path.read_bytes())
    position = data.index(b"Stella Biderman")
    data[position] = ord("X")
    path.write_bytes(bytes(data))
    return path


def _edit_manifest(change):
    def edit(generation: Path) -> Path:
        path = generation / store.MANIFEST
        manifest = json.loads(path.read_text(encoding="utf-8"))
        change(manifest)
        path.write_text(json.dumps(manifest), encoding="utf-8")
        return path

    return edit


def _future_format(manifest: dict) -> None:
    manifest["format_version"] = 99


def _other_model(manifest: dict) -> None:
    manifest["model"]["id"] = "sentence-transformers/all-mpnet-base-v2"


CORRUPTIONS = [
    pytest.param(_truncate_vectors, id="truncated-vectors"),
    pytest.param(_garbage_offsets, id="garbage-offsets"),
    pytest.param(_wrong_length_offsets, id="offsets-of-another-size"),
    pytest.param(_altered_passages, id="altered-passages-same-size"),
    pytest.param(_edit_manifest(_future_format), id="format-version-99"),
    pytest.param(
        _edit_manifest(_other_model), id="other-model-id",
    ),
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
def test_search_refuses_a_damaged_index(good_index: Path, corrupt) -> None:
    generation = store.live_generation(good_index)
    damaged = corrupt(generation)
    result = run_cli("search", "Who is the executive director of EleutherAI?", "--index", good_index)
    line = error_line(result)
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "rebuild" in line
    if damaged.name == store.MANIFEST:
        assert str(damaged) in line or str(good_index) in line, line
    else:
        assert str(damaged) in line, line
    assert result.stdout == ""


def test_rebuild_hint_names_only_options_that_build_accepts() -> None:
    hint = store.rebuild_hint(Path("INDEX"))
    assert hint.startswith("rebuild it with: semindex build")
    options = re.findall(r"(?<!\S)--[\w-]+", hint)
    assert "--index" in options
    help_text = run_cli("build", "--help", timeout=120)
    assert help_text.returncode == 0, help_text.stderr
    assert [option for option in options if option not in help_text.stdout] == []


def test_an_os_error_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not an index folder\n", encoding="utf-8")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Kites fly over the beach in Brighton every summer.\n", encoding="utf-8")
    line = error_line(run_cli("build", corpus, "--index", tmp_path / "a-file"))
    assert line.startswith(f"error: {tmp_path / 'a-file'}: ")


def test_a_damaged_cached_onnx_export_is_one_line(tmp_path: Path, monkeypatch, embedder) -> None:
    import shutil

    from indexer.build_model import BuildModel
    from indexer.onnx_export import export_folder
    from indexer.store import StoredIndex

    index = Path(__file__).resolve().parent.parent / "index"
    model = StoredIndex.open(index).manifest["model"]
    source = BuildModel(embedder=embedder, precision="fp32").export.folder  # made if missing
    monkeypatch.setenv("SEMINDEX_CACHE", str(tmp_path))
    damaged = export_folder(model["id"], model["fingerprint"])
    shutil.copytree(source, damaged)
    with (damaged / "model.onnx").open("r+b") as handle:
        handle.truncate(1000)
    line = error_line(run_cli("search", "EleutherAI", "--index", index))
    assert line.startswith(f"error: {damaged}: the cached ONNX export cannot be loaded (")
    assert line.endswith("delete that folder and it is made again")


def test_a_hub_model_that_cannot_be_fetched_fails_at_once_in_one_line(tmp_path: Path) -> None:
    """No minute of huggingface_hub retries: one connection attempt tells the hub is not there."""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("Kites fly over the beach.\n", encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if "proxy" not in name.lower() and name != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))  # the discard port: refused
    result = subprocess.run([sys.executable, "-m", "query.cli", "build", str(tmp_path / "corpus"), "--index",
                             str(tmp_path / "index"), "--model", "someorg/no-such-model"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: cannot load model 'someorg/no-such-model': it is not in this machine's Hugging Face cache and the hub "
        "at http://127.0.0.1:9 cannot be reached (Connection refused); give a model folder instead"]
    assert not (tmp_path / "index" / "CURRENT").exists()
