"""Scratch folders that killed processes leave behind, and their removal by the next run."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

LEFTOVER_MAX_AGE_S = 24 * 3600
"""Leftovers whose name carries no process id are removed once this old (by mtime)."""


def process_alive(pid: int) -> bool:
    """Whether a process with this id may run on this machine (under any user). An id that
    names no single process (0 and below name process groups; too large) counts as alive."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; no pid at all
        return True
    return True


def remove_leftovers(parent: Path, *, pattern: re.Pattern[str]) -> None:
    """Delete the scratch folders that killed processes left in ``parent``: the entries whose
    name fully matches ``pattern`` (which has a ``pid`` group, optional or not) and whose pid
    names a process that no longer runs; where the name has no pid, those older than
    ``LEFTOVER_MAX_AGE_S``. A live process's folder is never touched (a reused pid keeps a
    leftover until that process ends too)."""
    try:
        entries = list(parent.iterdir())
    except FileNotFoundError:
        return
    for path in entries:
        match = pattern.fullmatch(path.name)
        if match is None:
            continue
        if match.group("pid") is not None:
            stale = not process_alive(int(match.group("pid")))
        else:
            try:
                stale = time.time() - path.lstat().st_mtime > LEFTOVER_MAX_AGE_S
            except FileNotFoundError:  # another process removed it just now
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
