"""A real ``semindex serve`` on a free loopback port, and a small HTTP client for it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
START_LIMIT = 180.0
"""Seconds a server may take to load its index before the fixture gives up (not a test of speed)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def semindex(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, from the repository root."""
    return subprocess.run([sys.executable, "-m", "query.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, **kwargs)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A ``semindex serve`` subprocess; use as a context manager."""

    index: Path
    extra: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "query.cli", "serve", "--index", str(self.index), "--port", str(self.port), *self.extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"semindex serve exited {self.process.returncode}: {self.process.stdout.read()}")
            try:
                if self.request("GET", "/healthz").status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError("semindex serve did not answer /healthz")

    def __exit__(self, *_exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
                raw: bytes | None = None, headers: dict[str, str] | None = None,
                connection: http.client.HTTPConnection | None = None) -> Response:
        """One request; ``body`` is sent as JSON, ``raw`` as it is."""
        conn = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        if params:
            path = f"{path}?{urlencode(params)}"
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            conn.request(method, path, body=payload, headers={**sent, **(headers or {})})
            reply = conn.getresponse()
            return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
        finally:
            if connection is None:
                conn.close()
