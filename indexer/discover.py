"""Stage 1 of a build: find the corpus files, and fingerprint them for change detection."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from indexer import safety
from indexer.documents import input_fingerprint
from indexer.errors import CorpusError, unencodable

TEXT_SUFFIXES = (".txt", ".md")

Warn = Callable[[str], None]


def discover(corpus: Path, *, warn: Warn, follow_links: bool = False) -> list[tuple[Path, str]]:
    """Every .txt/.md file under ``corpus`` (sorted, symlink loops broken, links leaving it
    skipped unless ``follow_links``), others noted."""
    if not corpus.exists():
        raise CorpusError(f"{corpus}: corpus folder not found")
    if not corpus.is_dir():
        raise CorpusError(f"{corpus}: not a folder")
    found: list[tuple[Path, str]] = []
    seen_dirs: dict[str, str] = {}  # real path -> the corpus-relative path it was first read under
    links = safety.LinkPolicy(corpus, follow=follow_links)
    for root, dirs, files in os.walk(corpus, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:
            loop = real in {os.path.realpath(parent) for parent in Path(root).parents}
            why = "symlink loop" if loop else f"a symlink to {seen_dirs[real]}, already read"
            warn(f"{os.path.relpath(root, corpus)}: skipped ({why})")
            dirs.clear()
            continue
        seen_dirs[real] = Path(os.path.relpath(root, corpus)).as_posix()
        dirs[:] = links.keep(root, sorted(d for d in dirs if not d.startswith(".")), warn=warn)
        for name in links.keep(root, sorted(files), warn=warn):
            if name.startswith("."):
                continue
            path = Path(root) / name
            relative = path.relative_to(corpus).as_posix()
            if unencodable(relative) is not None:  # bytes that are not UTF-8 in the file or folder name
                shown = os.fsencode(relative).decode("utf-8", "backslashreplace")
                warn(f"{shown}: skipped (its name is not valid UTF-8, so it cannot be cited)")
            elif path.suffix.lower() in TEXT_SUFFIXES:
                found.append((path, relative))
            else:
                warn(f"{relative}: skipped (only .txt and .md files are indexed)")
    return sorted(found, key=lambda item: item[1])


def hash_inputs(found: list[tuple[Path, str]]) -> dict[str, str | None]:
    """What changes when a discovered corpus file does (:func:`input_fingerprint`; None when
    it cannot be read)."""
    hashes: dict[str, str | None] = {}
    for path, name in found:
        try:
            hashes[name] = input_fingerprint(path)
        except OSError:
            hashes[name] = None
    return hashes
