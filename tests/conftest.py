"""Shared fixtures: one embedding model per session, corpora written into tmp folders,
and the bundled corpus indexed once into a session tmp folder (never into the repo)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "semindex", max_examples=100, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile("explore", settings.get_profile("semindex"), max_examples=2000, derandomize=False)
# Property tests run the same examples on every run (derandomized), so `make test` and CI
# fail only for a change in the code; `pytest --hypothesis-profile=explore` searches 2,000
# fresh random examples per property instead.
settings.load_profile("semindex")

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CORPUS = ROOT / "corpus"

Files = Mapping[str, "str | bytes"]


def write_files(root: Path, files: Files) -> Path:
    """Write ``{relative name: text or bytes}`` under ``root`` (created) and return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            # newline="" keeps the text byte for byte (no platform newline translation)
            with path.open("w", encoding="utf-8", newline="") as handle:
                handle.write(content)
    return root


@pytest.fixture(scope="session")
def embedder():
    """The default model, loaded once for every test that builds an index in-process."""
    from indexer.embedder import Embedder

    model = Embedder()
    model.model  # load now, so the first test that uses it does not carry the cost alone
    return model


@pytest.fixture(scope="session")
def make_corpus(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make_corpus(files, name="corpus")`` writes a corpus into a fresh session tmp folder
    (usable from module-scoped fixtures, which cannot use ``tmp_path``)."""

    def make(files: Files, name: str = "corpus") -> Path:
        return write_files(tmp_path_factory.mktemp(name) / name, files)

    return make


@pytest.fixture
def write_corpus(tmp_path: Path) -> Callable[..., Path]:
    """``write_corpus(files)`` writes ``{relative name: str | bytes}`` to ``tmp_path/corpus``
    and returns that folder."""

    def write(files: Files, name: str = "corpus") -> Path:
        return write_files(tmp_path / name, files)

    return write


@pytest.fixture(scope="session")
def bundled_index(embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled corpus/ indexed once per session into a tmp folder."""
    from indexer.build import build_index

    index = tmp_path_factory.mktemp("bundled") / "index"
    build_index(corpus=BUNDLED_CORPUS, index=index, embedder=embedder)
    return index
