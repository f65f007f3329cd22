"""Fault injection: SIGKILL a builder at random moments; the index must never be damaged.

A builder process updates an index of a few hundred small documents and is killed with
SIGKILL after a random (seeded) delay spanning its whole run: start-up, parsing, model
loading, embedding, writing the new generation, switching ``CURRENT`` and cleaning up.
After each kill the live index must load (checksums verified) and answer a fixed set of
searches exactly as before the build — or, when the kill came after the atomic switch,
exactly as the completed build does. A final build must clean up every leftover and be
identical to a clean full build.

Three kinds of update are killed: one that needs no embedding (metadata, renames,
deletions, copies: the builder never loads a model), one that changes text (the builder
starts the model's ONNX export and embeds the new passages), and the same with the export
disabled (the builder imports torch and loads sentence-transformers: slow, so fewer kills).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from synthetic import brief_corpus, search_snapshot, sentence, write_corpus

from indexer import onnx_export, store
from indexer.build import build_index
from indexer.compare import compare_indexes
from indexer.onnx_export import ensure_export
from indexer.store import StoredIndex

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = 300
KILLS = {"metadata": int(os.environ.get("SEMINDEX_CRASH_KILLS_META", "10")),
         "text": int(os.environ.get("SEMINDEX_CRASH_KILLS_TEXT", "8")),
         "text-torch": int(os.environ.get("SEMINDEX_CRASH_KILLS_TORCH", "2"))}
"""Kills per kind of update (20 in all); raise them through the environment for a longer soak
(``python bench/incremental.py --kills N`` does)."""
QUERIES = ["interest rates at the central bank", "strike over pay at the hospital", "ferries and the harbour"]
DRIVER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from indexer.build import build_index\n"
    "build_index(corpus=Path(sys.argv[1]), index=Path(sys.argv[2]))\n"
)


def builder(corpus: Path, index: Path, *, torch: bool = False) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "SEMINDEX_NO_ONNX"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    if torch:
        env["SEMINDEX_NO_ONNX"] = "1"
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(corpus), str(index)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run_to_end(corpus: Path, index: Path, *, torch: bool = False) -> float:
    began = time.perf_counter()
    process = builder(corpus, index, torch=torch)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr.decode()[-3000:]
    return time.perf_counter() - began


def variants(files: dict[str, str], rng: random.Random) -> dict[str, dict[str, str]]:
    """Target corpora: metadata-only changes, and the same plus edited text."""
    meta = dict(files)
    names = sorted(meta)
    for name in rng.sample([n for n in names if n.endswith(".md")], 5):
        meta[name] = meta[name].replace("category: ", "category: revised-", 1)
    for name in rng.sample([n for n in names if n.endswith(".txt")], 5):
        meta[f"moved-{name}"] = meta.pop(name)
    for name in rng.sample(sorted(meta), 4):
        meta.pop(name)
    for name in rng.sample(sorted(meta), 3):
        meta[f"copy-{name}"] = meta[name]
    text = dict(meta)
    for name in rng.sample([n for n in sorted(text) if n.startswith("n")], 3):
        headline_line = text[name].split("\n", 1)[0]
        text[name] = f"{headline_line}\n\n{sentence(rng)} {sentence(rng)}\n"
    return {"metadata": meta, "text": text, "text-torch": text}


def leftovers(index: Path) -> list[str]:
    return sorted(p.name for p in index.iterdir() if p.name.startswith((".building-", f".{store.POINTER}.")))


def test_sigkill_at_random_moments_never_damages_the_index(embedder, tmp_path: Path) -> None:
    rng = random.Random(20240517)
    # the export exists before the first builder starts, so no kill lands in making it
    ensure_export(model_id=embedder.ref.id, model_path=embedder.ref.local_path, fingerprint=embedder.fingerprint,
                  max_seq_length=embedder.max_seq_length)
    files = brief_corpus(DOCUMENTS, seed=5)
    base_corpus = write_corpus(tmp_path / "base", files)
    pristine = tmp_path / "pristine"
    # fp32, so the "text-torch" builders (SEMINDEX_NO_ONNX) embed with sentence-transformers
    build_index(corpus=base_corpus, index=pristine, embedder=embedder, precision="fp32")
    vectors = embedder.encode(QUERIES)
    base_answers = search_snapshot(pristine, QUERIES, vectors)

    targets: dict[str, Path] = {}
    durations: dict[str, float] = {}
    expected: dict[str, list] = {}
    for kind, target_files in variants(files, rng).items():
        targets[kind] = write_corpus(tmp_path / f"target-{kind}", target_files)
        # one undisturbed run on a copy: how long the builder takes, and what it produces
        probe = tmp_path / f"probe-{kind}"
        shutil.copytree(pristine, probe)
        durations[kind] = run_to_end(targets[kind], probe, torch=kind.endswith("torch"))
        expected[kind] = search_snapshot(probe, QUERIES, vectors)[1:]
    assert expected["text"] != base_answers[1:], "the text edits must change some answers"

    index = tmp_path / "index"
    shutil.copytree(pristine, index)
    outcomes = {"killed before the switch": 0, "killed after the switch": 0, "finished before the kill": 0}
    schedule = [kind for kind, count in KILLS.items() for _ in range(count)]
    rng.shuffle(schedule)
    kills = 0
    while schedule:
        kind = schedule[0]
        before = search_snapshot(index, QUERIES, vectors)
        live_before = store.live_generation(index).name
        delay = rng.uniform(0.0, durations[kind] * 0.95)
        began = time.perf_counter()
        process = builder(targets[kind], index, torch=kind.endswith("torch"))
        try:
            process.wait(timeout=delay)
            finished = True
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            finished = False
        after = search_snapshot(index, QUERIES, vectors)  # loads and verifies, or raises
        context = (kills, kind, round(delay, 3), finished, leftovers(index))
        if after[0] == live_before:
            assert after == before, context
            assert not finished, (context, process.stderr.read().decode()[-2000:] if process.stderr else "")
            outcomes["killed before the switch"] += 1
        else:
            assert after[1:] == expected[kind], context
            outcomes["finished before the kill" if finished else "killed after the switch"] += 1
            shutil.rmtree(index)  # start the next attempt from the base corpus again
            shutil.copytree(pristine, index)
        if finished:  # the builder was quicker than measured: aim earlier, and try again
            durations[kind] = min(durations[kind], time.perf_counter() - began)
            assert outcomes["finished before the kill"] <= 10, outcomes
            continue
        kills += 1
        schedule.pop(0)
    assert kills == sum(KILLS.values()) >= 20
    assert outcomes["killed before the switch"] >= kills // 2, outcomes

    # a final build completes, cleans up, and equals a clean full build
    run_to_end(targets["text"], index)
    assert leftovers(index) == []
    assert len([p for p in index.glob("gen-*")]) <= 2
    clean = tmp_path / "clean"
    build_index(corpus=targets["text"], index=clean, embedder=embedder, full=True, precision="fp32")
    assert compare_indexes(expected=clean, actual=index) == []
    difference = np.abs(
        StoredIndex.open(clean).vectors.reconstruct_n(0, StoredIndex.open(clean).count)
        - StoredIndex.open(index).vectors.reconstruct_n(0, StoredIndex.open(index).count)
    ).max()
    assert difference <= 1e-5
    print(f"\nkills: {outcomes}; builder runs: " + ", ".join(f"{k} {v:.1f}s" for k, v in durations.items()))


def test_an_export_removes_the_scratch_folders_of_killed_exports_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEMINDEX_CACHE", str(tmp_path))
    folder = onnx_export.export_folder("model", "weights")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    killed = folder.with_name(f".{folder.name}-int8-r{onnx_export.INT8_RECIPE}.{ended.pid}")
    running = folder.with_name(f".{'0' * 32}.{os.getpid()}")
    other = folder.with_name(f".{folder.name}.notes")
    for scratch in (killed, running, other):
        scratch.mkdir(parents=True)
        (scratch / onnx_export.ONNX_FILE).write_bytes(b"half written")

    def export(*, model_path: Path, out_dir: Path, max_seq_length: int) -> dict:
        out_dir.mkdir(parents=True)
        (out_dir / onnx_export.CONFIG_FILE).write_text("{}", encoding="utf-8")
        return {"fingerprint": "weights"}

    monkeypatch.setattr(onnx_export, "export_onnx", export)
    assert ensure_export(model_id="model", model_path=tmp_path, fingerprint="weights", max_seq_length=8) == folder
    assert sorted(p.name for p in folder.parent.iterdir()) == sorted(p.name for p in (folder, running, other))
