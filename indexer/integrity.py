"""Checks of what a generation's files hold, made when they are read back.

Checksums on load catch accidents in small generations; large ones are checked by size
only, and a tampered generation may carry recomputed checksums. So every row, matrix and
config read from disk is checked here before use: a passage line against its digest and
its fields, a keyword matrix against the row count, FAISS hits against their scores and
vectors, a cached ONNX export's config field by field.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from indexer.errors import IndexFormatError
from indexer.safety import brief

ROW_DIGEST_BYTES = 8
MAX_KEYWORD_ROWS = 1 << 31
MAX_ROW_BYTES = 64 << 20
"""No stored passage line is longer (a passage is a few hundred tokens, its sources a line
each); a longer byte range read from tampered offsets is refused before it is read."""
UNIT_TOLERANCE = 0.02
"""Stored vectors are L2-normalised float32 (int8 embedding included); a returned row whose
length differs from 1 by more than this was not written by a build."""


def row_digest(line: bytes) -> int:
    """A 64-bit digest of one stored passage line, checked when the row is read back."""
    return int.from_bytes(hashlib.blake2b(line, digest_size=ROW_DIGEST_BYTES).digest(), "little", signed=True)


def read_row(handle, start: int, end: int) -> bytes | None:
    """The bytes ``start:end`` of an open file, or None when that is no plausible row
    (reversed, negative, too long, or past the end of the file)."""
    if not 0 <= start < end or end - start > MAX_ROW_BYTES:
        return None
    handle.seek(start)
    line = handle.read(end - start)
    return line if len(line) == end - start else None


def load_array(path: Path, *, kind: str):
    """A one-dimensional numpy array of dtype kind ``kind`` ("i" integers, "f" floats),
    memory-mapped, or ValueError: numpy reports a damaged header as ValueError,
    SyntaxError, tokenize.TokenError and others, and a tampered shape or dtype would be
    indexed as if it were right."""
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except OSError:
        raise
    except Exception as error:  # noqa: BLE001 - see above: numpy's header parser raises many kinds
        raise ValueError(f"{type(error).__name__}: {brief(str(error))}") from None
    if array.ndim != 1 or array.dtype.kind != kind:
        raise ValueError(f"holds a {array.ndim}-dimensional {array.dtype} array")
    return array


def load_digests(path: Path, *, count: int):
    """The row digests at ``path``, or IndexFormatError when they are missing (a manifest
    that no longer lists them must not turn the row check off) or not ``count`` int64 values."""
    import numpy as np

    if not path.exists():
        raise IndexFormatError(f"{path}: missing")
    try:
        digests = load_array(path, kind="i")
    except (ValueError, OSError) as error:
        raise IndexFormatError(f"{path}: corrupt ({error})") from None
    if digests.dtype != np.int64 or digests.shape != (count,):
        raise IndexFormatError(f"{path}: holds {digests.shape} {digests.dtype} digests for {count} passages")
    return digests


def row_problem(line: bytes | None, passage: Any, *, number: int, digests: Any, what: str = "passage") -> str | None:
    """Why stored passage (or paragraph: ``what``) ``number`` (its bytes ``line`` and their
    JSON ``passage``) must not be shown, or None."""
    if line is None:
        return "its byte range is not in the file"
    if digests is not None and row_digest(line) != int(digests[number]):
        return "its bytes differ from what the build wrote"
    if passage is None:
        return "not JSON"
    if isinstance(passage, dict) and passage.get("id", number) != number:
        return f"it says it is {what} {brief(passage.get('id'))}"
    return passage_problem(passage)


def articles_problem(articles: Any) -> str | None:
    """Why a stored articles.json cannot be cited from, or None."""
    if not isinstance(articles, dict) or not all(isinstance(value, dict) for value in articles.values()):
        return "not a mapping of article keys to articles"
    return None


def _span(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value) and value[0] <= value[1])


def passage_problem(passage: Any) -> str | None:
    """Why a stored passage cannot be shown (a field missing or of another kind, a span
    that is no span, a copy group that is no number), or None."""
    if not isinstance(passage, dict):
        return "not an object"
    for key in ("text", "kind", "article"):
        if not isinstance(passage.get(key), str):
            return f"field {key!r} is missing or not a string"
    sources = passage.get("sources")
    if not isinstance(sources, list) or not sources:
        return "field 'sources' is missing or empty"
    for source in sources:
        if not isinstance(source, dict) or not isinstance(source.get("file"), str):
            return "a source has no file"
        if not _span(source.get("chars")) or not _span(source.get("lines")):
            return "a source's chars or lines are not a span"
    group = passage.get("copy_group", 0)
    if not isinstance(group, int) or isinstance(group, bool) or group < 0:
        return "field 'copy_group' is not a group number"
    return None


def paragraph_passages_problem(paragraph: Any, *, count: int) -> str | None:
    """Why a stored paragraph's passage list is not passage ids below ``count``, or None."""
    passages = paragraph.get("passages") if isinstance(paragraph, dict) else None
    if not isinstance(passages, list) or not all(
            isinstance(pid, int) and not isinstance(pid, bool) and 0 <= pid < count for pid in passages):
        return "field 'passages' is not a list of passage ids"
    return None


def groups_problem(groups: Any, *, count: int) -> str | None:
    """Why stored copy groups are not lists of passage ids below ``count``, or None (linear;
    once per generation opened)."""
    if not isinstance(groups, list) or not all(
            isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < count for i in ids)
            for ids in groups):
        return "not lists of passage ids"
    return None


def group_problem(groups: list[list[int]], group: int, passage: int) -> str | None:
    """Why passage ``passage`` cannot be in copy group ``group``, or None."""
    if group >= len(groups) or passage not in groups[group]:
        return f"passage {passage} names copy group {group}, which does not hold it"
    return None


def keyword_problem(
    *, num_docs: Any, expected: int | None, indices: Any, indptr: Any, vocabulary: Any, data: Any
) -> str | None:
    """Why a stored BM25 matrix cannot be scored against ``expected`` rows (a count that is
    not the index's, row ids past the end, term pointers out of order), or None. Linear in
    the matrix; run once per generation opened."""
    import numpy as np

    if not isinstance(num_docs, int) or isinstance(num_docs, bool) or num_docs < 0 or num_docs > MAX_KEYWORD_ROWS:
        return f"counts {brief(num_docs)} documents"
    if expected is not None and num_docs != expected:
        return f"counts {num_docs} documents where the index has {expected}"
    expected = num_docs
    if not isinstance(vocabulary, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and (not term or 0 <= v < len(indptr) - 1)
            for term, v in vocabulary.items()):  # bm25s keeps a row-less "" term no query has
        return "its vocabulary names rows the term pointers do not have"
    pointers = np.asarray(indptr)
    if len(pointers) and (pointers[0] != 0 or pointers[-1] != len(indices) or np.any(np.diff(pointers) < 0)):
        return "its term pointers are out of order"
    if len(indices) != len(data):
        return "its scores and row ids differ in length"
    if len(indices) and (int(np.min(indices)) < 0 or int(np.max(indices)) >= expected):
        return "it names rows past the end of the index"
    if len(data) and not np.all(np.isfinite(data)):
        return "it holds scores that are not numbers"
    return None


def keyword_tokenizer(config: Any) -> tuple[re.Pattern, frozenset[str], str | None]:
    """(token pattern, stopwords, Unicode normal form) of a stored keyword tokenizer, or
    ValueError saying which field is unusable."""
    if not isinstance(config, dict):
        raise ValueError("not an object")
    pattern, stopwords, normal = config.get("token_pattern"), config.get("stopwords"), config.get("normalize")
    if not isinstance(pattern, str):
        raise ValueError("field 'token_pattern' is not text")
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"field 'token_pattern' does not compile: {error}") from None
    if not isinstance(stopwords, list) or not all(isinstance(word, str) for word in stopwords):
        raise ValueError("field 'stopwords' is not a list of words")
    if normal not in (None, "NFC", "NFD", "NFKC", "NFKD"):
        raise ValueError(f"field 'normalize' is {brief(normal)}, not a Unicode normal form")
    return compiled, frozenset(stopwords), normal


def columns_problem(columns: Any) -> str | None:
    """Why a generation's filter metadata (``metadata.Columns``) cannot index itself: a
    passage, topic or file pair naming an article, passage or file row it lacks, or a file
    path that is not text; or None. Linear; run once per generation filtered."""
    import numpy as np

    def within(values: Any, size: int) -> bool:
        return not len(values) or (int(np.min(values)) >= 0 and int(np.max(values)) < size)

    articles, passages = len(columns.published), len(columns.passage_article)
    if not within(columns.passage_article, articles) or not within(columns.topic_article, articles):
        return "a passage or topic names an article it does not have"
    if not within(columns.topic_code, len(columns.topics)):
        return "a topic code is past the end of its topics"
    if len(columns.file_passage) != len(columns.file_row) or not within(columns.file_passage, passages):
        return "a file names a passage it does not have"
    if not within(columns.file_row, len(columns.files)) or not all(isinstance(name, str) for name in columns.files):
        return "a passage names a file it does not have"
    return None


def facets_problem(facets: dict[str, Any]) -> str | None:
    """Why the filterable values read from metadata (dates, publishers, topics) cannot be
    shown or written as JSON, or None."""
    dates = facets["dates"]
    if not all(value is None or isinstance(value, str) for value in (dates["first"], dates["last"])):
        return "a published date is not text"
    for entry in (*facets["publishers"], *facets["topics"]):
        if not isinstance(entry["name"], str) or not isinstance(entry["passages"], int):
            return "a publisher or topic is not a name with a passage count"
    return None


# --- caches --------------------------------------------------------------------------

ONNX_INPUTS = frozenset({"ids", "attention_mask", "type_ids"})
"""Attributes of a ``tokenizers.Encoding`` an export may feed to its graph."""


def onnx_config(config: Any) -> dict[str, Any]:
    """A cached ONNX export's config, checked field by field (ValueError naming the first
    that is missing or of another kind): it names the files opened and the attributes read."""
    if not isinstance(config, dict):
        raise ValueError("its config is not an object")
    for key in ("dimension", "max_seq_length"):
        if not isinstance(config.get(key), int) or isinstance(config.get(key), bool) or config[key] <= 0:
            raise ValueError(f"config field {key!r} is not a positive whole number")
    for key in ("tokenizer_file", "onnx_file", "output"):
        value = config.get(key)
        if not isinstance(value, str) or not value or "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError(f"config field {key!r} is not a file or output name")
    inputs = config.get("inputs")
    if not isinstance(inputs, dict) or not inputs or not all(
            isinstance(name, str) and value in ONNX_INPUTS for name, value in inputs.items()):
        raise ValueError("config field 'inputs' does not map graph inputs to token ids, mask or types")
    return config


def hits_problem(index: Any, scores: Any, ids: Any) -> str | None:
    """Why the hits of a FAISS search cannot be trusted, or None: a score that is no number,
    a row an exact index could not score (NaN vectors make FAISS return id -1), or a returned
    row that is not a unit vector (zeroed or overwritten), checked on the rows returned only."""
    import numpy as np

    if not np.all(np.isfinite(scores[ids >= 0])):
        return "a search returned scores that are not numbers"
    if type(index).__name__.startswith("IndexFlat") and np.any(ids < 0):
        return "an exact search could not score every vector (not numbers)"
    for row in stored_rows(index, ids):
        if not abs(float(np.linalg.norm(row)) - 1.0) <= UNIT_TOLERANCE:
            return "a returned vector is not of unit length"
    return None


def faiss_kind_problem(factory: str, index: Any) -> str | None:
    """Why a loaded FAISS index is not what the manifest's factory makes (another kind of
    index swapped in, or another metric), or None."""
    kind = type(index).__name__
    if getattr(index, "metric_type", 0) != 0:  # faiss.METRIC_INNER_PRODUCT
        return f"it ranks by another metric than inner product ({kind})"
    for prefix in ("IVF", "HNSW"):
        if factory.startswith(prefix) != (prefix in kind):
            return f"it is a {kind}, but the manifest's factory is {factory!r}"
    if factory == "Flat" and not kind.startswith("IndexFlat"):
        return f"it is a {kind}, but the manifest's factory is {factory!r}"
    return None


def stored_rows(index: Any, ids: Any) -> list[Any]:
    """The stored vectors of the returned ``ids`` (-1: no hit), or none where the index
    cannot give them back (an inverted file without a direct map)."""
    rows = []
    for i in ids:
        if i >= 0:
            try:
                rows.append(index.reconstruct(int(i)))
            except RuntimeError:
                return []
    return rows
