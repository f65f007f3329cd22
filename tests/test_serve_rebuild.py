"""A rebuild of the served folder under load: no request fails, none mixes generations.

Each corpus edition names its files ``e<edition>-…``, so a response shows which edition
every passage in it came from; the ``X-Semindex-Generation`` header says which generation
answered.
"""

from __future__ import annotations

import http.client
import re
import threading
from pathlib import Path

from serving import Server, semindex
from synthetic import brief_corpus, write_corpus

CLIENTS = 4
REQUESTS = 200
QUERIES = ["interest rates", "strike over pay", "electric ferries", "museum reopened"]


def edition(number: int) -> dict[str, str]:
    """The same briefs each edition, under names that carry the edition."""
    files = {f"e{number}-{name}": text for name, text in brief_corpus(60, seed=5).items()}
    files[f"e{number}-bulletin.txt"] = f"Bulletin edition {number}\n\nThe museum reopened for edition {number}.\n"
    return files


def editions_of(data: dict) -> set[str]:
    citations = [hit["citation"] for hit in data["hits"]] + [c for hit in data["hits"] for c in hit["also_in"]]
    return {re.match(r"(e\d+)-", c["file"]).group(1) for c in citations}


def test_requests_during_a_full_rebuild_all_succeed_each_on_one_generation(embedder, tmp_path: Path) -> None:
    from indexer.build import build_index

    index = tmp_path / "index"
    build_index(corpus=write_corpus(tmp_path / "v0", edition(0)), index=index, embedder=embedder)
    newer = write_corpus(tmp_path / "v1", edition(1))
    first = (index / "CURRENT").read_text().strip()
    results: list[tuple[int, str, set[str]]] = []
    failures: list[str] = []
    built = threading.Event()
    lock = threading.Lock()

    with Server(index) as server:
        def client(number: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            sent, last = 0, first
            # its share, and on until the build is done and the new generation answers it
            while (sent < REQUESTS // CLIENTS or not built.is_set() or last == first) and sent < 20 * REQUESTS:
                command = "ask" if sent % 2 else "search"
                try:
                    # asks use the sentence picker: a model reading 100 questions in turn would outlast the rebuild
                    params = {"q": QUERIES[(number + sent) % 4], "k": 5} | ({"reader": "sentence"} if command == "ask" else {})
                    reply = server.request("GET", f"/{command}", params=params, connection=conn)
                    data, last = reply.json(), reply.headers.get("x-semindex-generation", "")
                    with lock:
                        results.append((reply.status, reply.headers.get("x-semindex-generation", ""), editions_of(data)))
                except Exception as error:  # noqa: BLE001 - every failure is reported by the test
                    with lock:
                        failures.append(repr(error))
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                sent += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        rebuild = semindex("build", str(newer), "--index", str(index), "--full")
        built.set()
        for thread in threads:
            thread.join()
        second = (index / "CURRENT").read_text().strip()
        after = server.request("GET", "/search", params={"q": "museum reopened", "k": 3})

    assert rebuild.returncode == 0, rebuild.stderr
    assert first != second
    assert not failures
    assert len(results) >= REQUESTS
    assert all(status == 200 for status, _, _ in results), {s for s, _, _ in results}
    expected = {first: {"e0"}, second: {"e1"}}
    assert all(expected[generation] == editions for _, generation, editions in results)
    assert {generation for _, generation, _ in results} == {first, second}
    assert after.headers["x-semindex-generation"] == second and editions_of(after.json()) == {"e1"}
