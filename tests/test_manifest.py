"""A manifest that is valid JSON but lacks a field, or holds one of the wrong kind, is refused
when the index is opened: one line naming the manifest, the field and how to rebuild (exit
code 2 through the CLI), never a traceback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_errors import error_line, run_cli

from indexer import store
from indexer.errors import IndexFormatError
from indexer.manifest import schema_problem
from indexer.store import StoredIndex


@pytest.fixture(scope="module")
def built(make_corpus) -> Path:
    """One tiny index, built once through the CLI; tests damage copies of it."""
    corpus = make_corpus({"a.txt": "Kites fly over the beach in Brighton every summer.\n"}, name="kites")
    index = corpus.parent / "index"
    result = run_cli("build", corpus, "--index", index)
    assert result.returncode == 0, result.stderr
    return index


def damaged(built: Path, tmp_path: Path, change: Callable[[dict], object]) -> tuple[Path, Path]:
    """A copy of ``built`` whose manifest ``change`` edited: (index, manifest path)."""
    index = tmp_path / "index"
    shutil.copytree(built, index)
    path = store.live_generation(index) / store.MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return index, path


def _only_format(manifest: dict) -> None:
    for key in set(manifest) - {"format", "format_version"}:
        del manifest[key]


def _set(field: str, value: object) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        *parents, last = field.split("/")
        for key in parents:
            manifest = manifest[key]
        manifest[last] = value

    return change


def _drop(field: str) -> Callable[[dict], object]:
    return lambda manifest: manifest.pop(field)


BROKEN = [
    pytest.param(_only_format, "field 'model' is missing or not an object", id="format-fields-only"),
    pytest.param(_drop("model"), "field 'model' is missing or not an object", id="no-model"),
    pytest.param(_drop("counts"), "field 'counts' is missing or not an object", id="no-counts"),
    pytest.param(_drop("keyword"), "field 'keyword' is missing or not an object", id="no-keyword"),
    pytest.param(_set("model/dimension", "abc"), "field 'model.dimension' is missing or not an integer",
                 id="dimension-a-string"),
    pytest.param(_set("counts/passages", True), "field 'counts.passages' is missing or not an integer",
                 id="passages-a-bool"),
    pytest.param(_set("checksums/vectors.faiss/size", "1581"),
                 "field 'checksums.vectors.faiss.size' is missing or not an integer", id="checksum-size-a-string"),
    pytest.param(_set("chrome", [{"file": "a.txt", "kind": "image", "lines": [1], "text": "x"}]),
                 "field 'chrome.0.lines' is missing or not a line range", id="chrome-lines-short"),
]


@pytest.mark.parametrize(("change", "problem"), BROKEN)
def test_open_refuses_a_manifest_with_a_missing_or_mistyped_field(built: Path, tmp_path: Path, change, problem) -> None:
    index, path = damaged(built, tmp_path, change)
    with pytest.raises(IndexFormatError) as error:
        StoredIndex.open(index)
    assert str(error.value) == f"{path}: {problem}; {store.rebuild_hint(index)}"


@pytest.mark.parametrize(("change", "problem"), BROKEN[:5])
def test_search_reports_a_missing_or_mistyped_field_in_one_line(built: Path, tmp_path: Path, change, problem) -> None:
    index, path = damaged(built, tmp_path, change)
    result = run_cli("search", "hello", "--index", index)
    assert error_line(result) == f"error: {path}: {problem}; {store.rebuild_hint(index)}"
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stdout == ""


def test_search_params_that_do_not_fit_the_faiss_index_are_refused(built: Path, tmp_path: Path) -> None:
    index, path = damaged(built, tmp_path, _set("faiss/search_params", "nprobe=8"))
    expected = (f"{path}: FAISS search parameters 'nprobe=8' cannot be set on {store.VECTORS} "
                f"(IndexFlatIP: ParameterSpace::set_index_parameter:could not set parameter nprobe); "
                f"{store.rebuild_hint(index)}")
    with pytest.raises(IndexFormatError) as error:
        StoredIndex.open(index).vectors
    assert str(error.value) == expected
    result = run_cli("search", "hello", "--index", index)
    assert error_line(result) == f"error: {expected}"
    assert result.stdout == ""


def test_a_built_manifest_has_every_field_it_is_checked_for(built: Path) -> None:
    assert schema_problem(StoredIndex.open(built).manifest.to_json()) is None


def test_build_over_a_broken_manifest_rebuilds_in_full(built: Path, tmp_path: Path) -> None:
    index, _ = damaged(built, tmp_path, _drop("counts"))
    corpus = built.parent / "kites"
    result = run_cli("build", corpus, "--index", index)
    assert result.returncode == 0, result.stderr
    assert "field 'counts' is missing" in result.stderr and "rebuilt in full" in result.stderr
    assert StoredIndex.open(index, verify=True).count == 1


def test_a_model_missing_from_this_machine_is_refused_without_asking_a_hub(built: Path, tmp_path: Path) -> None:
    """Queries load the index's model from this machine only (``Embedder(local_only=True)``):
    a hub name that is not cached here is one line naming it."""
    index, path = damaged(built, tmp_path, lambda manifest: manifest["model"].update(id="no-such-org/no-such-model"))
    line = error_line(run_cli("search", "kites", "--index", index, timeout=120))
    assert f"{path}: built with model 'no-such-org/no-such-model', which cannot be loaded here" in line
    assert "rebuild it with: semindex build CORPUS" in line


def test_queries_never_ask_a_hub_for_the_model(built: Path, tmp_path: Path, monkeypatch) -> None:
    """The searcher loads the index's model with ``local_files_only``: whatever the loader
    would do with a hub is never tried."""
    import sentence_transformers

    from query.index import open_searcher

    asked: list[dict] = []

    def loader(self, source, **options):
        asked.append(options)
        raise OSError(f"{source} is not in the local cache")

    monkeypatch.setattr(sentence_transformers.SentenceTransformer, "__init__", loader)
    index, _ = damaged(built, tmp_path, lambda manifest: manifest["model"].update(id="no-such-org/no-such-model"))
    with pytest.raises(IndexFormatError, match="built with model 'no-such-org/no-such-model', which cannot be loaded here"):
        open_searcher(index).embedder
    assert asked and all(options.get("local_files_only") is True for options in asked)


def test_the_committed_index_holds_only_its_live_generation() -> None:
    index = Path(__file__).resolve().parents[1] / "index"
    live = (index / store.POINTER).read_text(encoding="utf-8").strip()
    assert sorted(path.name for path in index.glob("gen-*")) == [live], \
        "after `make index`, git rm the previous generation: the repository holds only the live one"


def test_info_verify_checks_the_counts_that_search_checks(built: Path, tmp_path: Path) -> None:
    index, _ = damaged(built, tmp_path, lambda manifest: manifest["counts"].update(passages=5))
    line = error_line(run_cli("info", "--index", index, "--verify"))
    assert "vectors.faiss: holds 1 vectors but the manifest counts 5 passages" in line


def test_a_file_the_checksums_do_not_list_is_refused(built: Path, tmp_path: Path) -> None:
    index, _ = damaged(built, tmp_path, lambda manifest: manifest["checksums"].pop(store.PASSAGES))
    line = error_line(run_cli("search", "kites", "--index", index))
    assert f"{store.PASSAGES}: not listed in the manifest's checksums" in line and "rebuild it with" in line


@pytest.mark.parametrize("damage", ["bytes", "folder"])
def test_an_unreadable_current_pointer_is_one_line(built: Path, tmp_path: Path, damage: str) -> None:
    index = tmp_path / "index"
    shutil.copytree(built, index)
    (index / store.POINTER).unlink()
    if damage == "bytes":
        (index / store.POINTER).write_bytes(b"\xff")
    else:
        (index / store.POINTER).mkdir()
    line = error_line(run_cli("search", "kites", "--index", index))
    assert line.startswith(f"error: {index / store.POINTER}: unreadable (") and "rebuild it with" in line


def test_an_unknown_precision_is_one_line_naming_the_manifest_when_building_or_querying(built: Path, tmp_path: Path) -> None:
    index, path = damaged(built, tmp_path, _set("model/precision", "int4"))
    expected = (f"{path}: field 'model.precision' is 'int4', not one of fp32, int8; "
                f"{store.rebuild_hint(index)} --precision int8 (or fp32)")
    with pytest.raises(IndexFormatError) as error:
        StoredIndex.open(index)
    assert str(error.value) == expected
    corpus = built.parent / "kites"
    for command in (("search", "kites"), ("info",), ("build", corpus), ("build", corpus, "--check")):
        result = run_cli(*command, "--index", index)
        assert result.stderr.strip().splitlines() == [f"error: {expected}"], command  # no "rebuilt in full" first
    rebuilt = run_cli("build", corpus, "--index", index, "--full", "--precision", "int8")  # as the hint says
    assert rebuilt.returncode == 0 and "'int4'" in rebuilt.stderr, rebuilt.stderr
    assert StoredIndex.open(index).manifest["model"]["precision"] == "int8"
