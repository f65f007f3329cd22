"""Incremental build time as a fraction of a full build, on at least 2,000 articles.

The corpus is SciFact's abstracts written as news records (YAML front matter with title,
date, URL and publisher, then the abstract as the body), or synthetic records when the
SciFact file is missing. Every build runs as its own process, as ``semindex build`` does,
so the times include start-up and imports:

    full           first build of the corpus (every passage embedded, sentence-transformers)
    unchanged      nothing changed: "up to date", no parsing, no model
    edit 1 text    one sentence of one article's body changed
    edit 1 text*   the same with SEMINDEX_NO_ONNX=1 (embeds with torch, not the ONNX export)
    edit 1 title   one article's title changed (its title/excerpt/publisher passages re-embedded)
    edit 1 meta    one article's category changed (nothing embedded)
    add+delete     one article added, another deleted

Usage::

    python bench/incremental.py [--articles 2000] [--workdir DIR] [--keep]
    python bench/incremental.py --kills 100   # SIGKILL soak: tests/test_crash.py with 100 kills
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = Path(os.environ.get("SCIFACT_CORPUS", "/work/shared/eval/scifact/corpus.jsonl"))
DRIVER = """
import json, sys, time
from pathlib import Path
from indexer.build import build_index
report = build_index(corpus=Path(sys.argv[1]), index=Path(sys.argv[2]), full=sys.argv[3] == "full")
heavy = sorted({"torch", "onnxruntime"} & set(sys.modules))
print(json.dumps({"passages": report.passages, "embedded": report.embedded, "reused": report.reused,
                  "unchanged": report.unchanged, "seconds": report.seconds, "loaded": heavy}))
"""


def article(number: int, doc_id: str, title: str, body: str) -> str:
    day = number % 28 + 1
    return (
        "---\n"
        f"title: {json.dumps(title, ensure_ascii=False)}\n"
        f"publishedDateTime: \"2024-03-{day:02d}T08:00:00Z\"\n"
        f"webUrl: \"https://news.example.org/science/{doc_id}\"\n"
        "category: science\n"
        "provider:\n  name: Science Desk\n"
        "---\n"
        f"{body}\n"
    )


def write_corpus(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if SCIFACT.is_file():
        with SCIFACT.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for _, line in zip(range(count), handle)]
    else:
        rows = []
    if len(rows) < count:  # synthetic stand-ins
        sys.path.insert(0, str(ROOT / "tests"))
        import random

        from synthetic import headline, sentence

        rng = random.Random(0)
        rows += [{"_id": f"synthetic-{n}", "title": headline(rng), "text": " ".join(sentence(rng) for _ in range(8))}
                 for n in range(len(rows), count)]
    for number, row in enumerate(rows):
        text = article(number, row["_id"], row["title"] or f"Article {row['_id']}", row["text"])
        (folder / f"{number:05d}_{row['_id']}.md").write_text(text, encoding="utf-8")


def build(corpus: Path, index: Path, *, full: bool = False, torch: bool = False) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "SEMINDEX_NO_ONNX"}
    if torch:
        env["SEMINDEX_NO_ONNX"] = "1"
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", DRIVER, str(corpus), str(index), "full" if full else ""],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "wall": wall}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def timings(articles: int, workdir: Path) -> list[tuple[str, dict]]:
    corpus, index = workdir / "corpus", workdir / "index"
    shutil.rmtree(workdir, ignore_errors=True)
    write_corpus(corpus, articles + 1)
    spare = workdir / "spare.md"  # an article the corpus does not hold yet, added later
    sorted(corpus.iterdir())[-1].rename(spare)
    files = sorted(corpus.iterdir())
    rows = [("full", build(corpus, index, full=True))]
    rows.append(("unchanged", build(corpus, index)))
    body_file = files[len(files) // 2]
    first_sentence = body_file.read_text(encoding="utf-8").split("---\n", 2)[2].split(". ", 1)[0]
    edit(body_file, first_sentence, first_sentence + " (corrected)")
    rows.append(("edit 1 text", build(corpus, index)))
    edit(body_file, " (corrected)", " (corrected twice)")
    rows.append(("edit 1 text*", build(corpus, index, torch=True)))
    edit(files[10], "title: \"", "title: \"Update: ")
    rows.append(("edit 1 title", build(corpus, index)))
    edit(files[20], "category: science", "category: health")
    rows.append(("edit 1 meta", build(corpus, index)))
    spare.rename(corpus / "99999_added.md")
    files[40].unlink()
    rows.append(("add+delete", build(corpus, index)))
    return rows


def print_table(rows: list[tuple[str, dict]], articles: int) -> None:
    full = rows[0][1]["wall"]
    print(f"\n{articles} articles, {rows[0][1]['passages']} passages; wall time per build process, start-up included\n")
    print(f"| {'build':<13} | {'seconds':>8} | {'of full':>8} | {'embedded':>8} | {'reused':>7} | loaded |")
    print(f"|{'-' * 15}|{'-' * 9}:|{'-' * 9}:|{'-' * 9}:|{'-' * 8}:|--------|")
    for name, row in rows:
        loaded = ",".join(row["loaded"]) or "-"
        print(f"| {name:<13} | {row['wall']:8.2f} | {row['wall'] / full:8.2%} | {row['embedded']:8d} | "
              f"{row['reused']:7d} | {loaded} |")


def kills(count: int) -> int:
    env = {**os.environ, "SEMINDEX_CRASH_KILLS_META": str(count // 2), "SEMINDEX_CRASH_KILLS_TEXT": str(count * 2 // 5),
           "SEMINDEX_CRASH_KILLS_TORCH": str(count - count // 2 - count * 2 // 5)}
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", "tests/test_crash.py"], cwd=ROOT, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the corpus and index (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--kills", type=int, default=0, help="run the SIGKILL soak with this many kills instead")
    args = parser.parse_args()
    if args.kills:
        raise SystemExit(kills(args.kills))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="semindex-bench-"))
    try:
        rows = timings(args.articles, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows, args.articles)


if __name__ == "__main__":
    main()
