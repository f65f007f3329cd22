"""`semindex build --ray`: a real Ray head on loopback embeds, the driver writes the index.

The test starts the head itself (`ray start --head` on 127.0.0.1, bounded by timeouts) and
stops it at the end, so `.ci/run` starts nothing; Ray comes with the `test` extra (through
`semindex[ray]`). Without Ray the cluster tests are skipped and only the install hint is checked.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from indexer.compare import compare_indexes
from indexer.errors import SemindexError
from indexer.store import StoredIndex

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
"""The head and its drivers share a token of this test's own (nothing is written to ~/.ray)."""
QUESTIONS = ["Who pays for open-source AI models?", "What did the article say about Meta?"]


def test_without_ray_the_build_says_how_to_install_it(monkeypatch):
    from indexer.ray_build import INSTALL_HINT, require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(SemindexError, match=r"pip install 'semindex\[ray\]'") as caught:
        require_ray()
    assert str(caught.value) == INSTALL_HINT and "\n" not in INSTALL_HINT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on loopback with 2 CPUs, in its own temp folder; stopped afterwards."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'semindex[ray]')")
    ray_cli = BIN / "ray"
    port = free_port()
    temp = tempfile.mkdtemp(prefix="sray")  # short: Ray's unix sockets live under it
    env = RAY_ENV
    start = subprocess.run(
        [str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        capture_output=True, text=True, timeout=180, env=env,
    )
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True, timeout=120, env=env)
        shutil.rmtree(temp, ignore_errors=True)


def semindex(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "semindex"), *args], capture_output=True, text=True, timeout=timeout, env=RAY_ENV)


def test_a_ray_build_is_the_index_a_local_build_makes(ray_head, tmp_path):
    corpus = ROOT / "corpus"
    on_ray, local = tmp_path / "on_ray", tmp_path / "local"
    built = semindex("build", str(corpus), "--index", str(on_ray), "--ray", ray_head)
    assert built.returncode == 0, built.stderr
    assert f"embedded on Ray at {ray_head} by" in built.stdout
    assert semindex("build", str(corpus), "--index", str(local)).returncode == 0

    assert compare_indexes(expected=local, actual=on_ray) == []  # same passages, vectors within --check's tolerance
    stored = StoredIndex.open(on_ray)
    cluster = stored.manifest["build"]["ray"]
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
