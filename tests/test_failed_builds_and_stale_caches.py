"""A failed first build leaves no index folder behind; a cached BEIR index follows its model
folder's weights and prompts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from indexer.build import build_index
from indexer.errors import SemindexError
from test_evaluate import write_beir

DOCUMENTS = {
    "bees": ("Honey bee colonies", "Worker bees forage for nectar and pollen and store honey in wax combs."),
    "volcano": ("Volcanic eruptions", "Magma rises through the crust and erupts as lava, ash and volcanic gas."),
    "tides": ("Ocean tides", "The gravitational pull of the Moon raises the tides twice a day."),
}
QUERIES = {"q1": ("Where do bees store honey?", "bees"), "q2": ("Why does the Moon cause tides?", "tides")}
PROMPTS = {"query": "query: ", "document": "passage: "}


@pytest.fixture
def kites(write_corpus) -> Path:
    return write_corpus({"good.txt": "Kites fly over the beach in Brighton.\n"})


@pytest.mark.parametrize("failure", ["model", "factory"])
def test_a_failed_first_build_leaves_no_index_folder(kites, tmp_path, failure):
    (tmp_path / "not-a-model").mkdir()
    options = {"model": str(tmp_path / "not-a-model")} if failure == "model" else {"factory": "Bogus123"}
    with pytest.raises(SemindexError):
        build_index(corpus=kites, index=tmp_path / "index", **options)
    assert not (tmp_path / "index").exists()


def test_a_failed_build_keeps_an_index_folder_that_was_there(kites, tmp_path):
    (tmp_path / "index").mkdir()
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(SemindexError, match="no model weights"):
        build_index(corpus=kites, index=tmp_path / "index", model=str(tmp_path / "not-a-model"))
    assert (tmp_path / "index").is_dir()


def change_weights(model: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(model / "model.safetensors")
    name = next(name for name in sorted(tensors) if name.endswith("weight"))
    tensors[name] = tensors[name] * 0.5
    (model / "model.safetensors").unlink()
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})


def add_prompts(model: Path) -> None:
    config = json.loads((model / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    (model / "config_sentence_transformers.json").write_text(json.dumps({**config, "prompts": PROMPTS}), encoding="utf-8")


@pytest.mark.parametrize(("change", "what"), [(change_weights, "weights"), (add_prompts, "prompts")])
def test_a_beir_cache_is_embedded_again_when_its_model_folder_changes(tmp_path, monkeypatch, capsys, change, what):
    from indexer.embedder import default_model_folder
    from indexer.store import MANIFEST, live_generation
    from query.evaluate import evaluate_beir

    monkeypatch.setenv("SEMINDEX_NO_ONNX", "1")  # embed with sentence-transformers: no export of the copy
    model = tmp_path / "model"
    shutil.copytree(default_model_folder(), model)
    folder = write_beir(tmp_path / "tiny", documents=DOCUMENTS, queries=QUERIES, split="test")
    cache = tmp_path / "cache"

    def evaluate() -> tuple[str, dict]:
        evaluate_beir(folder, mode="keyword", model=str(model), cache=cache, precision="fp32")
        [index] = [path for path in (cache / "beir").iterdir() if path.is_dir()]
        live = live_generation(index)
        return live.name, json.loads((live / MANIFEST).read_text(encoding="utf-8"))

    _, before = evaluate()
    change(model)
    generation, after = evaluate()
    if what == "weights":
        assert after["model"]["fingerprint"] != before["model"]["fingerprint"]
    else:
        assert after["model"]["prompts"] == PROMPTS and "prompts" not in before["model"]
    assert after["build"]["embedded"] > 0 and after["build"]["reused"] == 0
    assert f"the {what} of model" in capsys.readouterr().err
    assert evaluate()[0] == generation and capsys.readouterr().err == ""  # now current: left alone
