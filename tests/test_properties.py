"""Property-based tests (hypothesis) of the front matter parser and the chunker.

The parser either refuses a file with InputError or returns segments that are exact,
trimmed spans of the file; the chunker's passages always slice back to the text, stay
within the token budget and cover every sentence.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, example, given
from hypothesis import strategies as st

from indexer.chunking import ChunkSettings, pack_passages, sentence_spans
from indexer.documents import parse_file
from indexer.errors import InputError


# Text that looks like news metadata, plus what breaks naive parsers: quotes, colons,
# hashes, dashes, brackets, YAML indicators, unicode, line breaks and stray spaces.
TRICKY = st.sampled_from([
    '"', "'", ":", ": ", " #", "#", "---", "- ", "[", "]", "{", "}", ",", "&", "*", "!", "|", ">", "%", "@", "`",
    "\\", "\n", "\t", "  ", "é", "ß", "—", "“", "”", "…", "東京", "🚀", "\u00a0", "\u2028", "\ufeff", "\x85",
    "yes", "no", "null", "~", "2024-05-17", "12:30", "0x1F", "1e3", ".inf",
])
WORDS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12)
VALUE = st.lists(st.one_of(WORDS, TRICKY), min_size=0, max_size=8).map("".join)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


def write(folder: Path, text: str, name: str = "doc.txt") -> Path:
    path = folder / name
    path.write_bytes(text.encode("utf-8"))
    return path


def non_blank(value: str) -> str:
    """Whitespace-only values give inverted spans (see test_whitespace_only_value_gives_an_empty_span)."""
    return value if value.strip() or not value else value + "x"


def parsed_or_refused(path: Path):
    """``parse_file`` of ``path``, or None when it is refused with an InputError naming the file."""
    try:
        return parse_file(path, "doc.txt")
    except InputError as error:
        assert error.file == "doc.txt"
        return None


def check_segments(text: str, parsed) -> None:
    for segment in parsed.segments:
        assert 0 <= segment.start <= segment.end <= len(parsed.text), segment
        piece = parsed.text[segment.start : segment.end]
        assert piece == piece.strip(), (segment, piece)
    for block in parsed.chrome:
        assert parsed.text[block.start : block.end].strip() == block.text.strip()


@given(title=VALUE, excerpt=VALUE, publisher=VALUE, category=VALUE, body=VALUE,
       style=st.sampled_from([None, '"', "'"]), topics=st.lists(VALUE, max_size=3))
@example(title='Say "hi": now', excerpt="a: b # c", publisher="O'Neil & Co", category="x", body="", style=None, topics=[])
@example(title="—", excerpt="'quoted'", publisher="", category="", body="Body text.", style="'", topics=["a: b"])
def test_front_matter_parses_to_exact_spans_or_input_error(
    scratch, title, excerpt, publisher, category, body, style, topics
) -> None:
    title, excerpt, publisher = non_blank(title), non_blank(excerpt), non_blank(publisher)
    fields = {"title": title, "excerpt": excerpt, "provider": {"name": publisher}, "category": category,
              "topics": topics, "webUrl": "https://example.com/a"}
    front = yaml.safe_dump(fields, allow_unicode=True, default_style=style, width=10_000, sort_keys=False)
    text = f"---\n{front}---\n{body}"
    path = write(scratch, text)
    parsed = parsed_or_refused(path)
    if parsed is None:
        return
    check_segments(text, parsed)
    article = parsed.articles["https://example.com/a"]
    body_start = len(text) - len(body)
    # segments of the front matter; a short first line of the body is a headline ("title")
    # too, and gives the article its title when the front matter has none
    kinds = {segment.kind: segment for segment in parsed.segments if segment.end <= body_start}
    headlines = [parsed.text[s.start : s.end] for s in parsed.segments if s.kind == "title" and s.start >= body_start]
    if is_simple(title) and title:
        assert article.title == title
    elif not title:
        assert article.title == (headlines[0] if headlines else None)
    for kind, value in (("title", title), ("excerpt", excerpt)):
        segment = kinds.get(kind)
        if not value.strip():
            continue
        assert segment is not None, (kind, value)
        raw = parsed.text[segment.start : segment.end]
        if is_simple(value):
            # plain, single-quoted ('' for ') or double-quoted (\" and \\ escaped) scalar
            assert raw in (value, value.replace("'", "''"), value.replace("\\", "\\\\").replace('"', '\\"')), (raw, value)


def is_simple(value: str) -> bool:
    """A one-line value that YAML writes without escape sequences (other than quotes).
    PyYAML's double-quoted style escapes everything beyond U+FFFF ("🚀" is written
    "\\U0001F680"), so those characters are not simple either."""
    return value == value.strip() and value.isprintable() and not re.search(
        r"[\x85\u2028\u2029\ufeff\u00a0\U00010000-\U0010FFFF]", value)


@given(value=VALUE)
def test_json_style_double_quoted_values_are_spans(scratch, value) -> None:
    """A hand-written record quoting its title as JSON does: a span of the file, or refused."""
    value = non_blank(value)
    text = f"---\ntitle: {json.dumps(value, ensure_ascii=False)}\nexcerpt: plain excerpt: with colon\n---\n"
    path = write(scratch, text)
    try:
        parsed = parse_file(path, "doc.txt")
    except InputError:
        return
    check_segments(text, parsed)
    title = [s for s in parsed.segments if s.kind == "title"]
    if value.strip():
        assert len(title) == 1
        raw = parsed.text[title[0].start : title[0].end]
        if "\\" not in raw:
            assert raw == value.strip()


@given(lines=st.lists(VALUE, min_size=1, max_size=8), date=st.booleans())
def test_bare_bodies_parse_to_exact_spans(scratch, lines, date) -> None:
    text = ("date 2024-05-17\n" if date else "") + "\n\n".join(lines)
    assume(text.strip())
    path = write(scratch, text)
    parsed = parsed_or_refused(path)
    if parsed is None:
        return
    check_segments(text, parsed)


@pytest.mark.parametrize("value", ["' '", '"   "'])
def test_whitespace_only_value_gives_an_empty_span(scratch, value) -> None:
    parsed = parse_file(write(scratch, f"---\ntitle: Fine\nexcerpt: {value}\n---\n"), "doc.txt")
    for segment in parsed.segments:
        assert segment.start <= segment.end, segment


# --- chunking ------------------------------------------------------------------------------

SENTENCE_TEXT = st.lists(
    st.one_of(
        st.text(alphabet="abcdefghij KLMNOP", min_size=1, max_size=30),
        st.sampled_from([". ", "! ", "? ", "… ", ".\n", "\n", "\n\n", "  ", "Mr. ", "U.S. ", "e.g. ", "J. ", '." ', ".) ",
                         "3.14 ", "é", "東京", "🚀", "\t", ". . ", "..."]),
    ),
    max_size=60,
).map("".join)


def whitespace_tokens(text: str) -> int:
    return len(text.split())


def whitespace_offsets(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in re.finditer(r"\S+", text)]


@given(text=SENTENCE_TEXT, cut=st.tuples(st.integers(0, 400), st.integers(0, 400)))
def test_sentence_spans_are_trimmed_ordered_spans_within_bounds(text, cut) -> None:
    start, end = sorted(min(c, len(text)) for c in cut)
    spans = sentence_spans(text, start, end)
    previous = start
    for s, e in spans:
        assert previous <= s < e <= end
        piece = text[s:e]
        assert piece == piece.strip() and piece
        previous = e
    # every non-space character of the range is in some sentence
    covered = {i for s, e in spans for i in range(s, e)}
    assert all(i in covered for i in range(start, end) if not text[i].isspace())


@given(text=SENTENCE_TEXT, max_tokens=st.integers(1, 12), overlap=st.integers(0, 3))
def test_packed_passages_slice_back_and_respect_the_budget(text, max_tokens, overlap) -> None:
    spans = sentence_spans(text)
    budget = ChunkSettings(max_tokens=max_tokens, overlap=overlap)
    passages = list(pack_passages(text, spans, count_tokens=whitespace_tokens, token_offsets=whitespace_offsets,
                                  settings=budget))
    if not spans:
        assert passages == []
        return
    starts = {s for s, _ in spans}
    for s, e in passages:
        assert spans[0][0] <= s < e <= spans[-1][1]
        piece = text[s:e]
        assert piece == piece.strip()
        assert whitespace_tokens(piece) <= max_tokens, (piece, max_tokens)
    assert [s for s, _ in passages] == sorted(s for s, _ in passages)
    # every token of the text is in some passage
    tokens = [(spans_s, spans_e) for s, e in spans for spans_s, spans_e in
              ((s + a, s + b) for a, b in whitespace_offsets(text[s:e]))]
    for s, e in tokens:
        assert any(ps <= s and e <= pe for ps, pe in passages), (text[s:e], passages)
    # a passage starts at a sentence start unless a long sentence was cut inside
    long_sentence = any(whitespace_tokens(text[s:e]) > max_tokens for s, e in spans)
    if not long_sentence:
        assert all(s in starts for s, _ in passages)


@pytest.fixture(scope="module")
def model_tokens():
    """The default model's tokenizer as the build uses it (tokenizers only, no torch)."""
    from indexer.build_model import BuildModel

    return BuildModel().tokens


@given(text=SENTENCE_TEXT, max_tokens=st.integers(4, 40))
def test_passages_respect_the_model_token_budget(model_tokens, text, max_tokens) -> None:
    spans = sentence_spans(text)
    passages = list(pack_passages(text, spans, count_tokens=model_tokens.count, token_offsets=model_tokens.offsets,
                                  settings=ChunkSettings(max_tokens=max_tokens)))
    for s, e in passages:
        assert text[s:e] == text[s:e].strip() and e > s
        assert model_tokens.count(text[s:e]) <= max_tokens
