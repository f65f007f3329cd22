"""Guards against hostile corpora and tampered indexes, as small pure functions.

Each answers one question before semindex acts on something it read from disk or the
environment: may this YAML be expanded, may this path be opened, is this folder an
index's to delete from, is this stored row what the build wrote. A "problem" function
returns a one-line reason (or None); callers raise it as their own error kind.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from indexer.errors import CorpusError

YAML_MAX_DEPTH = 64
"""Front matter nested deeper than this is refused (an article's fields nest two or three
levels; PyYAML's composer recurses once per level and would overflow the stack)."""
YAML_EXPANSION_FACTOR = 4
YAML_EXPANSION_SLACK = 10_000
"""A YAML document may expand (aliases resolved) to at most FACTOR × its length + SLACK
values and characters: without aliases a document never exceeds about twice its length,
so only alias bombs (billion laughs, thousands of copies of one entry) are refused."""
JSON_NESTING = "nested too deeply"
GENERATION = re.compile(r"gen-\d+")
SCRATCH = re.compile(r"\.building-gen-\d+-\d+")
POINTER_TEMP = re.compile(r"\.CURRENT\.\d+")
GENERATION_MARK = "semindex-generation.json"
"""A file every build writes first into its new generation: the mark that a ``gen-*``
folder is one an index made, and so one a later build may delete."""
MANIFEST_HEAD = re.compile(rb'\A\s*\{\s*"format"\s*:\s*"semindex-index"')
"""How manifests begin (``format`` first): the mark of generations written before
:data:`GENERATION_MARK` was."""
PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")
MAX_SETTING_BYTES = 1 << 62
BRIEF = 80


class YamlLimitError(ValueError):
    """A YAML document that would expand beyond what its size allows, or nest too deeply."""


# --- YAML and JSON -------------------------------------------------------------------


def yaml_limit_problem(source: str, *, max_depth: int = YAML_MAX_DEPTH, max_weight: int | None = None) -> str | None:
    """Why ``source`` may not be composed (nested deeper than ``max_depth``, or expanding
    through aliases to more than ``max_weight`` values and characters), or None.

    Reads the event stream, which PyYAML produces without recursion, and sizes every
    anchored node once, so the check is linear in the document however its aliases
    multiply. A YAML syntax error is left for the composer to report.
    """
    import yaml

    limit = max_weight if max_weight is not None else YAML_EXPANSION_FACTOR * len(source) + YAML_EXPANSION_SLACK
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[None, 0]]  # [anchor, weight so far] of each open collection
    total = 0
    for event in yaml.parse(source, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(stack) > max_depth:
                return f"nested deeper than {max_depth} levels"
            stack.append([event.anchor, 1])
            total += 1
            continue
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, weight = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, weight = event.anchor, 1 + len(event.value)
            total += weight
        elif isinstance(event, yaml.AliasEvent):
            anchor, weight = None, sizes.get(event.anchor, 1)
            total += weight
        else:
            continue
        if anchor is not None:
            sizes[anchor] = weight
        stack[-1][1] += weight
        if total > limit:
            return f"its aliases expand to more than {limit:,} values and characters (it is {len(source):,} long)"
    return None


def bounded_yaml(source: str, *, max_depth: int = YAML_MAX_DEPTH) -> tuple[Any, Any]:
    """(data, root node) of a YAML document, as ``yaml.safe_load`` and ``yaml.compose`` give
    them, or YamlLimitError when :func:`yaml_limit_problem` refuses it. yaml.YAMLError for
    bad syntax, as PyYAML raises it."""
    import yaml

    if (problem := yaml_limit_problem(source, max_depth=max_depth)) is not None:
        raise YamlLimitError(problem)
    node = yaml.compose(source, Loader=yaml.SafeLoader)
    if node is None:
        return None, None
    data = yaml.SafeLoader("").construct_document(yaml.compose(source, Loader=yaml.SafeLoader))
    return data, node


def json_loads(text: str | bytes) -> Any:
    """``json.loads``, with nesting too deep for the parser's recursion a JSONDecodeError
    (a ValueError) rather than a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(JSON_NESTING, "", 0) from None


def brief(value: Any, *, limit: int = BRIEF) -> str:
    """``repr(value)`` cut to ``limit`` characters, for an error message: a value read from
    a file may be huge (or, through YAML aliases, astronomically large when printed)."""
    if isinstance(value, (list, dict, tuple, set)):
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value) if not isinstance(value, str) or len(value) <= limit * 4 else repr(value[: limit * 4])
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- paths ---------------------------------------------------------------------------


def is_within(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` (resolved, links followed) lies inside the resolved ``root``."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def leaves_root(path: Path, root: Path) -> bool:
    """Whether ``path`` is reached through a symbolic link and resolves to an existing
    regular file or folder outside ``root`` (a link to a device, or a broken one, is left for
    the reader's own checks, which refuse it without opening it)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        return False
    return not is_within(path, root)


class LinkPolicy:
    """Which entries of a corpus folder discovery may enter: links that leave the corpus
    root are skipped with a note unless ``follow`` (``build --follow-links``)."""

    def __init__(self, root: Path, *, follow: bool) -> None:
        self.root = root
        self.follow = follow

    def keep(self, folder: str | Path, names: list[str], *, warn) -> list[str]:
        """``names`` in ``folder`` that do not lead outside the root, the others noted."""
        if self.follow:
            return names
        kept = []
        for name in names:
            path = Path(folder) / name
            if os.path.islink(path) and leaves_root(path, self.root):
                shown = printable_name(os.path.relpath(path, self.root))
                warn(f"{shown}: skipped (a symbolic link to outside the corpus; build --follow-links indexes it)")
            else:
                kept.append(name)
        return kept


def printable_name(text: str) -> str:
    """A file name as text that encodes: bytes that are not UTF-8 as ``\\xNN``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def path_problem(path: Path) -> str | None:
    """Why a path given on the command line cannot be used (bytes that are not UTF-8: it
    could be neither recorded in a manifest nor cited), or None."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return f"{printable_name(str(path))}: the path is not valid UTF-8; rename it"
    return None


def read_regular(path: Path, *, limit: int | None = None) -> bytes:
    """The bytes of ``path`` if it is a regular file (a FIFO put in its place would block
    forever, a device never end), else OSError; with ``limit``, OSError when larger."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path}: not a regular file")
        if limit is not None and info.st_size > limit:
            raise OSError(f"{path}: larger than {limit} bytes")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(descriptor)


def generation_file_problem(generation: Path, name: Any) -> str | None:
    """Why a file name a manifest lists cannot be a file of ``generation`` (not a plain
    relative name, leaving the folder, or not a regular file there), or None."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\0" in name:
        return f"the manifest lists {brief(name)}, which is not a file name inside the generation"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return f"the manifest lists {brief(name)}, which is not a file name inside the generation"
    path = generation / name
    if path.is_symlink() or not is_within(path, generation):
        return f"the manifest lists {brief(name)}, which leads outside the generation"
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        return f"{brief(name)} is not a regular file"
    return None


def recorded_corpus(index: Path, where: Any) -> Path | None:
    """The corpus folder a manifest records (relative to ``index``), or None when it records
    none that may be walked: not text, absolute (semindex records a relative path wherever
    one exists), or inside a pseudo-filesystem (/proc, /sys, /dev)."""
    if not isinstance(where, str) or not where or os.path.isabs(where) and os.name == "posix":
        return None
    folder = index / where
    real = os.path.realpath(folder)
    if any(real == root or real.startswith(root + "/") for root in PSEUDO_FILESYSTEMS):
        return None
    return folder


# --- the index folder ----------------------------------------------------------------


def mark_generation(folder: Path) -> None:
    """Mark a folder a build just made as a generation of its index (see :func:`is_generation`)."""
    (folder / GENERATION_MARK).write_text('{"written_by": "semindex build", "a build may delete this folder": true}\n',
                                          encoding="utf-8")


def is_generation(folder: Path) -> bool:
    """Whether ``folder`` is a generation an index made: a real folder named ``gen-N``
    holding :data:`GENERATION_MARK`, or (older builds) a manifest that semindex wrote.
    Only such folders are ever deleted by a build."""
    if not GENERATION.fullmatch(folder.name) or folder.is_symlink() or not folder.is_dir():
        return False
    mark = folder / GENERATION_MARK
    if mark.is_file() and not mark.is_symlink():
        return True
    manifest = folder / "manifest.json"
    try:
        if manifest.is_symlink():
            return False
        descriptor = os.open(manifest, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(descriptor).st_mode) and bool(MANIFEST_HEAD.match(os.read(descriptor, 256)))
    except OSError:
        return False
    finally:
        os.close(descriptor)


def index_folder_problem(index: Path) -> str | None:
    """Why a build may not write into ``index``: it is a file, or holds something semindex
    did not make there (a build deletes the generations it no longer needs, so it must be
    sure which folders are its own), or None. Hidden files (``.gitignore``) are allowed."""
    if not index.exists() and not index.is_symlink():
        return None
    if not index.is_dir():
        return f"{index}: is a file, not an index folder; choose a folder for --index"
    for entry in sorted(index.iterdir()):
        name = entry.name
        if name in ("CURRENT", ".lock") or SCRATCH.fullmatch(name) or POINTER_TEMP.fullmatch(name):
            continue
        if is_generation(entry) or (name.startswith(".") and entry.is_file() and not entry.is_symlink()):
            continue
        return (f"{index}: holds {printable_name(name)!r}, which semindex did not make; an index folder holds "
                "only what semindex writes (choose another --index, or move that away)")
    return None


def removable_scratch(path: Path) -> bool:
    """Whether ``path`` is a killed build's scratch folder (``.building-gen-N-PID``)."""
    return bool(SCRATCH.fullmatch(path.name)) and path.is_dir() and not path.is_symlink()


def write_failure(error: BaseException, *, folder: Path) -> str | None:
    """A one-line message for a failure to write the new generation into ``folder`` (disk
    full, quota, a file too large; FAISS reports these as RuntimeError), or None for any
    other error. The live generation is untouched by such a failure."""
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
        where = error.filename or folder
    elif isinstance(error, RuntimeError) and re.search(r"write|fwrite|No space|errno", str(error), re.I):
        found = re.search(r"No space left on device|File too large|Disk quota exceeded", str(error))
        reason = found.group(0) if found else "the write failed"
        where = folder
    else:
        return None
    return f"{where}: cannot write the new index generation ({reason}); the live index is unchanged"


# --- settings from the environment ---------------------------------------------------


def megabytes_setting(name: str, value: str | None, *, default: int) -> int:
    """Bytes from an environment setting of a positive number of megabytes (``default``
    when unset; huge values capped rather than overflowing), or CorpusError naming it."""
    if value is None:
        return default
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = math.nan
    if not 0 < megabytes < math.inf:
        raise CorpusError(f"{name}={brief(value)}: expected a positive number of megabytes")
    return int(min(megabytes * 2**20, MAX_SETTING_BYTES))


def flag_setting(value: str | None) -> bool:
    """An environment flag: unset, empty, ``0``, ``false``, ``no`` and ``off`` are off."""
    return value is not None and value.strip().lower() not in ("", "0", "false", "no", "off")


def size_comparison(size: int, limit: int) -> str:
    """"50.0 MB; the limit is 10 MB", or in bytes when megabytes would hide the difference
    (a file one byte over a 10 MB limit is not "10.0 MB; the limit is 10 MB")."""
    if size - limit < 2**20 // 10:
        return f"{size:,} bytes; the limit is {limit:,} bytes"
    return f"{size / 2**20:.1f} MB; the limit is {limit / 2**20:g} MB"
