"""Fuzzing front matter and every file of a generation (issue 19), through the real CLI.

Each example runs ``semindex`` in a subprocess under the resource limits of
``test_hostile.run`` (address space and CPU seconds), so a blow-up or a hang fails the
example. A hostile corpus file costs one warning line and is skipped; a tampered index file
is one ``error:`` line with exit 2, or correct results: every hit quotes its file's own text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from indexer.documents import parse_file
from indexer.errors import InputError
from test_hostile import GOOD, LARGE, Result, live, reseal, run, snapshot

# --- front matter --------------------------------------------------------------------------

SCALARS = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20).map(json.dumps),  # quoted, escapes
    st.sampled_from(["lol", "2023-05-12", "2023-13-45T99:00:00Z", "~", "null", "yes", "1e999", ".nan", "!!binary AAA=",
                     "!!python/object:os.system ls", "&x lol", "*x", "*undefined", "'", '"', "[", "{", "|-\n  block",
                     "<<: *x", "? complex", "- item", "\t", "\x00", "\x1b[2J", "\ufeff", "\u202e"]),
)
FIELDS = st.sampled_from(["title", "excerpt", "publishedDateTime", "provider", "related", "topics", "webUrl", "x",
                          "<<", "date", "url", "category"])


@st.composite
def front_matter(draw) -> str:
    """YAML-ish front matter: fields whose values nest, anchor and alias one another."""
    def value(depth: int) -> str:
        kind = draw(st.integers(0, 4 if depth < 6 else 0))
        anchor = f"&a{draw(st.integers(0, 3))} " if draw(st.booleans()) else ""
        if kind == 0:
            return draw(SCALARS)
        if kind == 1:
            return f"*a{draw(st.integers(0, 3))}"
        if kind == 2:
            return anchor + "[" + ", ".join(value(depth + 1) for _ in range(draw(st.integers(0, 4)))) + "]"
        if kind == 3:
            items = (f"{draw(FIELDS)}: {value(depth + 1)}" for _ in range(draw(st.integers(0, 4))))
            return anchor + "{" + ", ".join(items) + "}"
        return anchor + "[" * (depth * 50) + "]" * (depth * 50)
    lines = [f"{draw(FIELDS)}: {value(0)}" for _ in range(draw(st.integers(1, 6)))]
    body = draw(st.sampled_from(["", "Body text about ferries in the harbour.\n"]))
    return "---\n" + "\n".join(lines) + "\n---\n" + body


@settings(max_examples=300)
@given(text=front_matter())
def test_any_front_matter_parses_or_is_one_input_error(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.txt"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        parsed = parse_file(path, "f.txt")
    except InputError as error:
        assert "\n" not in str(error) and len(str(error)) < 1000
        return
    for segment in parsed.segments:
        assert 0 <= segment.start <= segment.end <= len(parsed.text)


NO_SHRINKING = [Phase.explicit, Phase.reuse, Phase.generate]
"""Each example runs semindex in subprocesses for seconds: a failure is reported as drawn
(the drawn file, action and offset say what broke) rather than shrunk for minutes."""


@settings(max_examples=4, suppress_health_check=list(HealthCheck), phases=NO_SHRINKING)
@given(texts=st.lists(front_matter(), min_size=15, max_size=15))
def test_a_corpus_of_fuzzed_files_builds_with_one_warning_each(tmp_path_factory, texts: list[str]) -> None:
    root = tmp_path_factory.mktemp("fuzzcorpus")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text(GOOD, encoding="utf-8")
    for number, text in enumerate(texts):
        (corpus / f"f{number:02d}.txt").write_bytes(text.encode("utf-8", "surrogatepass"))
    result = run("build", corpus, "--index", root / "index").ok()
    lines = [line for line in result.err.splitlines() if line]
    assert all(line.startswith("warning: ") for line in lines), result.err
    for number in range(len(texts)):
        assert sum(line.startswith(f"warning: f{number:02d}.txt:") for line in lines) <= 1


# --- every file of a generation ------------------------------------------------------------

CORPUS = {
    "kites.txt": GOOD,
    "ferries.txt": "---\ntitle: Harbour ferries return\nexcerpt: The ferries return to the harbour in spring.\n"
                   "publishedDateTime: 2024-03-01\nprovider:\n  name: Coast News\n---\n",
    "bridge.txt": "Council approves the river bridge\n\nThe council approved the new bridge over the river on "
                  "Tuesday after a long debate about its cost.\n",
}


@pytest.fixture(scope="module")
def fuzz_index(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("fuzzindex")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in CORPUS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    index = root / "index"
    run("build", corpus, "--index", index).ok()
    generation = live(index)
    files = sorted(p.relative_to(index).as_posix() for p in index.rglob("*") if p.is_file() and p.name != ".lock")
    assert any(name.endswith("manifest.json") for name in files) and generation.is_dir()
    return corpus, index, files


def _quotes_its_files(result: Result, corpus: Path) -> None:
    for hit in json.loads(result.out)["hits"]:
        for citation in [hit["citation"], *hit["also_in"]]:
            text = (corpus / citation["file"]).read_text(encoding="utf-8")
            start, end = citation["chars"]
            assert text[start:end] == hit["text"], (citation, hit["text"])


@settings(max_examples=12, suppress_health_check=list(HealthCheck), phases=NO_SHRINKING)
@given(data=st.data())
def test_a_tampered_index_file_is_one_line_or_correct_results(fuzz_index, tmp_path_factory, data) -> None:
    corpus, index, files = fuzz_index
    copy = tmp_path_factory.mktemp("tampered") / "index"
    shutil.copytree(index, copy)
    name = data.draw(st.sampled_from(files), label="file")
    path = copy / name
    content = bytearray(path.read_bytes())
    action = data.draw(st.sampled_from(["flip", "truncate", "junk", "empty"]), label="action")
    where = data.draw(st.integers(0, max(0, len(content) - 1)), label="offset")
    if action == "flip" and content:
        content[where] ^= data.draw(st.integers(1, 255), label="xor")
    elif action == "truncate":
        del content[where:]
    elif action == "junk":
        content[where:where + 8] = data.draw(st.binary(min_size=1, max_size=8), label="junk")
    else:
        content = bytearray()
    path.write_bytes(bytes(content))
    resealed = name.startswith("gen-") and not name.endswith("manifest.json") and data.draw(st.booleans(), label="reseal")
    if resealed:
        reseal(live(copy))
    before = snapshot(corpus)
    command = data.draw(st.sampled_from(["search", "ask"]), label="command")
    result = run(command, "ferries harbour spring", "--index", copy, "--json", python=LARGE)
    if result.code == 2:
        result.error_line()
    else:
        result.ok()
        if not resealed:  # resealed, any bytes are the index's own: wrong but well-formed answers
            _quotes_its_files(result, corpus)
    assert snapshot(corpus) == before
