"""`semindex build --ray`: a real Ray head on loopback embeds, the driver writes the index.

The test starts the head itself (`ray start --head` on 127.0.0.1, bounded by timeouts) and
stops it at the end, so `.ci/run` starts nothing; Ray comes with the `test` extra (through
`semindex[ray]`). Without Ray the cluster tests are skipped and only the install hint is checked.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from indexer.compare import compare_indexes
from indexer.errors import SemindexError
from indexer.store import StoredIndex
from tests.ray_cluster import free_port, semindex
from tests.ray_cluster import ray_head as start_head

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["Who pays for open-source AI models?", "What did the article say about Meta?"]


def test_without_ray_the_build_says_how_to_install_it(monkeypatch):
    from indexer.ray_build import INSTALL_HINT, require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(SemindexError, match=r"pip install 'semindex\[ray\]'") as caught:
        require_ray()
    assert str(caught.value) == INSTALL_HINT and "\n" not in INSTALL_HINT


def test_passages_cut_in_shards_and_joined_are_the_ones_cut_from_the_whole_corpus(tmp_path):
    """Ray tasks cut consecutive shards of the files; joined, they must be make_passages' own
    output over the whole corpus, whatever the split: copies of one article's text in
    several files (a copied record, a record another page lists) are one passage and one
    paragraph, and each passage points to its paragraph."""
    from indexer.build_model import BuildModel
    from indexer.chunking import ChunkSettings
    from indexer.discover import discover
    from indexer.documents import read_files
    from indexer.linking import merge_articles
    from indexer.passages import make_passages
    from indexer.ray_corpus import _shards, join_shards
    from tests.synthetic import news_corpus, write_corpus

    corpus = write_corpus(tmp_path / "corpus", news_corpus(30, seed=4))
    for name in ("r0003.md", "r0010.md"):  # the same record in a second folder, after the first
        (corpus / "z").mkdir(exist_ok=True)
        shutil.copy(corpus / name, corpus / "z" / name)
    shutil.copytree(ROOT / "corpus", corpus / "news")  # real pages whose related entries list each other
    parsed, _, _ = read_files(corpus, discover(corpus, warn=print), warn=print)
    articles = merge_articles(parsed)
    model, settings = BuildModel(), ChunkSettings()
    whole = make_passages(parsed, articles, model, settings)
    assert any(len({source.file for source in passage.sources}) > 1 for passage in whole.passages)
    assert any(passage.sources[-1].listed_by for passage in whole.passages if len(passage.sources) > 1)
    assert any(len({source.file for source in paragraph.sources}) > 1 for paragraph in whole.paragraphs)
    splits = {tuple(_shards([len(file.text) for file in parsed], cpus)) for cpus in (1, 2, 3, 5, 8)}
    splits.add(tuple((i, i + 1) for i in range(len(parsed))))  # a file a shard
    for split in splits:
        shards = [make_passages(parsed[start:end], articles, model, settings) for start, end in split]
        assert join_shards(shards) == whole, split


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on loopback with 2 CPUs, in its own temp folder; stopped afterwards."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'semindex[ray]')")
    with start_head(cpus=2) as address:
        yield address


def test_a_ray_build_is_the_index_a_local_build_makes(ray_head, tmp_path):
    corpus = ROOT / "corpus"
    on_ray, local = tmp_path / "on_ray", tmp_path / "local"
    built = semindex("build", str(corpus), "--index", str(on_ray), "--ray", ray_head)
    assert built.returncode == 0, built.stderr
    assert semindex("build", str(corpus), "--index", str(local)).returncode == 0
    count = StoredIndex.open(local).count
    assert f"on Ray at {ray_head}: read 5 files in " in built.stdout and f", embedded {count} passages by " in built.stdout

    assert compare_indexes(expected=local, actual=on_ray) == []  # same passages, vectors within --check's tolerance
    stored, stored_locally = StoredIndex.open(on_ray), StoredIndex.open(local)
    for name in ("passages.jsonl", "paragraphs.jsonl", "paragraph_of.npy"):
        assert (stored.generation / name).read_bytes() == (stored_locally.generation / name).read_bytes(), name
    # int8: each text embedded on its own, so the very same vectors
    assert (stored.vectors.reconstruct_n(0, stored.count) == stored_locally.vectors.reconstruct_n(0, stored.count)).all()
    cluster = stored.manifest["build"]["ray"]
    # the files were checked, fingerprinted, read and cut by tasks on the cluster's node
    assert cluster["checked_nodes"] == cluster["nodes"] and cluster["check"]["tasks"] == 1
    for stage, unit, count in (("fingerprint", "files", 5), ("read", "files", 5), ("cut", "passages", stored.count)):
        assert cluster[stage]["tasks"] >= 2 and cluster[stage][unit] == count
        assert {worker["node"] for worker in cluster[stage]["workers"]} == set(cluster["nodes"])
    # the head's one node embedded every passage, in worker processes of its own (Ray names a
    # loopback node by the machine's address)
    assert cluster["address"] == ray_head and len(cluster["nodes"]) == 1
    assert sum(worker["passages"] for worker in cluster["workers"]) == stored.count == stored.manifest["build"]["embedded"]
    assert 1 <= len({worker["pid"] for worker in cluster["workers"]}) <= 2  # --num-cpus 2: one embedder per CPU
    for question in QUESTIONS:
        answers = [semindex("ask", question, "--index", str(index), "--json") for index in (on_ray, local)]
        assert all(answer.returncode == 0 for answer in answers), [answer.stderr for answer in answers]
        assert json.loads(answers[0].stdout) == json.loads(answers[1].stdout)

    # `--check` against the Ray-built index passes with a local rebuild
    checked = semindex("build", str(corpus), "--index", str(on_ray), "--check")
    assert checked.returncode == 0, checked.stderr


def test_a_cluster_that_cannot_be_joined_fails_in_one_line_and_keeps_the_index(ray_head, tmp_path):
    corpus = ROOT / "corpus"
    index = tmp_path / "index"
    assert semindex("build", str(corpus), "--index", str(index)).returncode == 0
    live = (index / "CURRENT").read_text()
    failed = semindex("build", str(corpus), "--index", str(index), "--full", "--ray", f"127.0.0.1:{free_port()}",
                      timeout=300)
    assert failed.returncode == 2
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("error: --ray 127.0.0.1:"), failed.stderr
    assert (index / "CURRENT").read_text() == live


def test_an_fp32_ray_build_matches_a_local_one_within_the_check_tolerance(ray_head, tmp_path):
    """fp32 texts are embedded in batches on the cluster: padding may move the last bits only."""
    corpus = ROOT / "corpus"
    on_ray, local = tmp_path / "on_ray", tmp_path / "local"
    built = semindex("build", str(corpus), "--index", str(on_ray), "--precision", "fp32", "--ray", ray_head)
    assert built.returncode == 0, built.stderr
    assert semindex("build", str(corpus), "--index", str(local), "--precision", "fp32").returncode == 0
    assert StoredIndex.open(on_ray).manifest.precision == "fp32"
    assert compare_indexes(expected=local, actual=on_ray) == []
