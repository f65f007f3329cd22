"""Stage 6 of a build: write a generation and make it live (lock, publish, clean up).

One build at a time holds ``index/.lock``. A generation is written whole into a scratch
folder, renamed to ``gen-NNNNNN``, flushed, and published by replacing ``CURRENT``
atomically (:func:`indexer.store.publish_generation`); readers never take the lock and never
see a half-written generation. The live generation and the one before it are kept (a
reader may still be on it); everything else, and the leftovers of killed builds, go.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from indexer import safety, store
from indexer.errors import IndexFormatError, SemindexError


@contextmanager
def exclusive_lock(path: Path, *, busy: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing). When another process
    holds it, ``busy`` is raised as a :class:`SemindexError`, or with ``wait`` said on stderr
    while waiting for the lock."""
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise SemindexError(busy) from None
            print(busy, file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def build_lock(index: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``index`` for the length of a build (fails if taken). A
    folder made here is removed again when the build fails and it holds only the lock."""
    if problem := safety.index_folder_problem(index):
        raise IndexFormatError(problem)
    made = not index.exists()
    index.mkdir(parents=True, exist_ok=True)
    lock = index / ".lock"
    with exclusive_lock(lock, busy=f"{index}: another build is running on this index; wait for it to finish"):
        try:
            yield
        except BaseException:
            if made:
                with suppress(OSError):  # the build's own error is the one to report
                    if [path.name for path in index.iterdir()] == [lock.name]:
                        lock.unlink()
                        index.rmdir()  # fails when something appeared meanwhile: then it stays
            raise


def live_name(index: Path) -> str | None:
    """The generation ``CURRENT`` names, if it names an existing generation folder."""
    try:
        name = safety.read_regular(index / store.POINTER, limit=4096).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if name.startswith("gen-") and "/" not in name and (index / name).is_dir() else None


def generations_in_use(index: Path, live_name: str | None, live: store.StoredIndex | None) -> set[str]:
    """Generations a reader may be using: the live one and the one before it. With no live
    generation, every generation folder found (nothing is known about them)."""
    if live_name is None:
        return {p.name for p in index.glob("gen-*") if p.is_dir()}
    keep = {live_name}
    before = live.manifest.get("previous") if live is not None else None
    if isinstance(before, str):
        keep.add(before)
    else:  # built before manifests named their predecessor, or unreadable: the newest older generation
        older = sorted(p.name for p in index.glob("gen-*") if p.is_dir() and p.name < live_name)
        keep.update(older[-1:])
    return keep


def remove_stale_generations(index: Path, *, keep: set[str]) -> None:
    """Delete every generation not in ``keep`` (older ones, and any a killed build renamed
    into place but never published) and the leftovers of killed builds (scratch folders,
    half-written pointer files). Called under the build lock."""
    for path in sorted(p for p in index.glob("gen-*") if safety.is_generation(p)):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for path in filter(safety.removable_scratch, index.glob(".building-*")):
        shutil.rmtree(path, ignore_errors=True)
    for path in index.glob(f".{store.POINTER}.*"):
        path.unlink(missing_ok=True)


def write_generation(index: Path, *, live: str | None, fill: Callable[[Path], None]) -> Path:
    """A new live generation of ``index``: ``fill(folder)`` writes its files into a scratch
    folder, which becomes the next ``gen-NNNNNN`` and is published; then generations no
    reader can be on any more are removed (``live``: the generation live before, kept with
    the new one). Nothing is left behind when ``fill`` fails. Called under the build lock."""
    generation = index / store.next_generation_name(index)
    scratch = index / f".building-{generation.name}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    safety.mark_generation(scratch)
    try:
        fill(scratch)
        os.rename(scratch, generation)
    except BaseException as error:
        shutil.rmtree(scratch, ignore_errors=True)
        if problem := safety.write_failure(error, folder=scratch):
            raise SemindexError(problem) from None
        raise
    store.publish_generation(index, generation)
    if live is None:  # no pointer before: keep the newest generation found (as a reader may use
        # a folder copied in without its pointer), delete older ones
        others = sorted(p.name for p in index.glob("gen-*") if p.is_dir() and p.name != generation.name)
        keep = {generation.name, *others[-1:]}
    else:
        keep = {generation.name, live}
    remove_stale_generations(index, keep=keep)
    return generation


def write_vectors(path: Path, vectors, factory: str) -> None:
    """Write a FAISS inner-product index built from ``factory`` over ``vectors``."""
    import faiss

    from indexer.faiss_build import build_faiss_index, in_blocks

    index = build_faiss_index(factory, dimension=vectors.shape[1], count=len(vectors), blocks=in_blocks(vectors))
    faiss.write_index(index, str(path))
