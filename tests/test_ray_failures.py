"""`semindex build --ray` when the cluster fails it: a node that cannot read the corpus, a
worker killed mid-build (Ray runs its work again), workers that keep dying (the build fails
in one line and the live generation stays).

Each test starts its own Ray head on loopback (tests/ray_cluster.py) and stops it at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from indexer.compare import compare_indexes
from indexer.store import StoredIndex
from tests.ray_cluster import BIN, RAY_ENV, can_hide, ray_head, ray_processes, semindex
from tests.synthetic import news_corpus, write_corpus

pytest.importorskip("ray", reason="Ray is not installed (pip install 'semindex[ray]')")
EMBEDDER = "ray::MapWorker(MapBatches(BatchEmbedder))"
"""The title Ray gives an embedding actor's worker process."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """500 news files: each of two embedders spends seconds embedding after loading its model,
    even on a fast idle machine (150 files left one under a second, too short to catch)."""
    return write_corpus(tmp_path_factory.mktemp("ray-failures") / "corpus", news_corpus(500, seed=7))


@pytest.fixture(scope="module")
def local_index(corpus, tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("ray-failures") / "local"
    built = semindex("build", str(corpus), "--index", str(index))
    assert built.returncode == 0, built.stderr
    return index


@pytest.mark.skipif(not can_hide(), reason="needs root and unshare to give the Ray node its own mounts")
def test_a_node_that_cannot_read_a_corpus_path_fails_the_build_in_one_line(tmp_path):
    """The head's node sees an empty folder where the driver sees corpus/late/: the nodes'
    own check names the first file it cannot read, and nothing is built."""
    corpus = write_corpus(tmp_path / "corpus", news_corpus(12, seed=3))
    (corpus / "late").mkdir()
    for name in ("a.md", "b.md"):
        (corpus / "late" / name).write_text((corpus / "r0000.md").read_text(encoding="utf-8"), encoding="utf-8")
    index = tmp_path / "index"
    with ray_head(cpus=2, hide=(corpus / "late",)) as address:
        failed = semindex("build", str(corpus), "--index", str(index), "--ray", address, timeout=300)
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr == (f"error: {corpus}/late/a.md: not readable on Ray node {_node_address()} (No such file "
                             "or directory); every node must see the corpus at the same path (a shared filesystem)\n")
    assert not (index / "CURRENT").exists()


def test_a_worker_killed_mid_build_still_gives_the_local_index(corpus, local_index, tmp_path):
    index = tmp_path / "on_ray"
    with ray_head(cpus=2) as address:
        build = _start_build(corpus, index, address)
        killed = None
        while build.poll() is None:
            embedders = ray_processes(EMBEDDER)
            busy = [pid for pid in embedders if _cpu_seconds(pid) > 4]  # loaded its model, embedding
            if killed is None and busy:
                killed = busy[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        _, stderr = build.communicate(timeout=60)
    assert killed is not None, "the build ended before an embedder was busy"
    assert build.returncode == 0, stderr
    # Ray restarts the killed embedder or hands its batch to a surviving one (on a busy
    # machine the build may finish before a restarted process is seen): either way every
    # passage is embedded and the index is the local one
    assert compare_indexes(expected=local_index, actual=index) == []
    stored, local = StoredIndex.open(index), StoredIndex.open(local_index)
    assert (stored.vectors.reconstruct_n(0, stored.count) == local.vectors.reconstruct_n(0, local.count)).all()
    workers = stored.manifest["build"]["ray"]["workers"]
    copies = json.loads((stored.generation / "copies.json").read_text())  # a text shared by passages is embedded once
    assert sum(worker["passages"] for worker in workers) == stored.count - sum(len(group) - 1 for group in copies)


def test_workers_that_keep_dying_fail_the_build_and_keep_the_live_generation(corpus, local_index, tmp_path):
    index = shutil.copytree(local_index, tmp_path / "index")
    live = (index / "CURRENT").read_text()
    generations = sorted(path.name for path in index.iterdir())
    with ray_head(cpus=1) as address:  # one embedder to kill
        build = _start_build(corpus, index, address, "--full")
        kills = 0
        while build.poll() is None:
            for pid in ray_processes(EMBEDDER):
                os.kill(pid, signal.SIGKILL)
                kills += 1
            time.sleep(0.05)
        _, stderr = build.communicate(timeout=60)
    assert build.returncode == 2 and kills > 3, (kills, stderr)
    # one line of its own, last (Ray's C++ core may note its actor restarts above it), no traceback
    assert stderr.splitlines()[-1].startswith(f"error: --ray {address}: embedding failed on the cluster ("), stderr
    assert "Traceback" not in stderr and stderr.count("error:") == 1, stderr
    assert (index / "CURRENT").read_text() == live
    assert sorted(path.name for path in index.iterdir()) == generations  # the unfinished one removed
    assert semindex("build", str(corpus), "--index", str(index), "--check").returncode == 0


def _start_build(corpus: Path, index: Path, address: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "semindex"), "build", str(corpus), "--index", str(index), "--ray", address, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=RAY_ENV)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _node_address() -> str:
    """The address Ray names a loopback node by (the machine's own)."""
    import ray.util

    return ray.util.get_node_ip_address()
