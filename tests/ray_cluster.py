"""A Ray head on loopback for the `semindex build --ray` tests, started and stopped by the test.

The head runs in its own temp folder with a token of the test's own (nothing is written to
~/.ray); `hide` starts it in a mount namespace of its own where the given folders are empty,
as on a node that lacks part of a shared filesystem (needs root for `unshare`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
"""The head and its drivers share a token of this test run's own."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def can_hide() -> bool:
    """Can this machine start a head that sees other files than the test (a mount namespace)?"""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True).returncode == 0


@contextlib.contextmanager
def ray_head(cpus: int = 2, hide: tuple[Path, ...] = ()) -> Iterator[str]:
    """A head with ``cpus`` CPUs on 127.0.0.1 (its address as ``host:port``), stopped afterwards."""
    ray_cli = str(BIN / "ray")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="sray")  # short: Ray's unix sockets live under it
    start = [ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", str(cpus),
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    if hide:
        empty = tempfile.mkdtemp(prefix="sray-empty")
        mounts = " && ".join(f"mount --bind {empty} '{folder}'" for folder in hide)
        start = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "sh", *start]
    started = subprocess.run(start, capture_output=True, text=True, timeout=180, env=RAY_ENV)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"127.0.0.1:{port}"
    finally:
        # `ray stop` finds the head's processes by name, in whatever namespace they run
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=RAY_ENV)
        shutil.rmtree(temp, ignore_errors=True)
        if hide:
            shutil.rmtree(empty, ignore_errors=True)


def ray_processes(title: str) -> list[int]:
    """Pids of the Ray worker processes whose title (``ray::…``) starts with ``title``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if command.startswith(title):
            pids.append(int(entry.name))
    return sorted(pids)


def semindex(*args: str, timeout: int = 900, **popen: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "semindex"), *args], capture_output=True, text=True, timeout=timeout, env=RAY_ENV,
                          **popen)
