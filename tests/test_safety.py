"""The pure guards behind issue 19's fixes (indexer.safety, indexer.integrity, query.display)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexer import integrity, safety
from indexer.errors import CorpusError
from query.display import for_people, one_line, sanitized, visible


def test_ordinary_yaml_with_merge_keys_and_aliases_is_allowed() -> None:
    source = "defaults: &d {provider: {name: Coast News}}\ntitle: Ferries\n<<: *d\ntopics: [a, b]\n"
    assert safety.yaml_limit_problem(source) is None
    data, node = safety.bounded_yaml(source)
    assert data["provider"] == {"name": "Coast News"} and node is not None


def test_an_alias_tree_is_refused_before_it_expands() -> None:
    source = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
    assert "aliases expand" in safety.yaml_limit_problem(source)
    with pytest.raises(safety.YamlLimitError):
        safety.bounded_yaml(source)


def test_nesting_is_bounded_without_recursion() -> None:
    assert "nested deeper than 64" in safety.yaml_limit_problem("x: " + "[" * 5000 + "]" * 5000)
    assert safety.yaml_limit_problem("x: " + "[" * 60 + "]" * 60) is None


def test_deep_json_is_a_decode_error() -> None:
    with pytest.raises(ValueError, match=safety.JSON_NESTING):
        safety.json_loads("[" * 200_000 + "]" * 200_000)


def test_brief_never_formats_an_unbounded_value() -> None:
    assert safety.brief(["x"] * 10**6) == "a list of 1000000 items"
    assert len(safety.brief("y" * 10**6)) <= safety.BRIEF


@pytest.mark.parametrize(("value", "expected"), [(None, 7), ("1", 2**20), ("1e308", safety.MAX_SETTING_BYTES)])
def test_megabyte_settings_never_overflow(value, expected) -> None:
    assert safety.megabytes_setting("X", value, default=7) == expected


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan", "x" * 10_000])
def test_bad_megabyte_settings_are_one_short_line(value) -> None:
    with pytest.raises(CorpusError) as error:
        safety.megabytes_setting("X", value, default=7)
    assert len(str(error.value)) < 200


def test_flags_read_false_as_false() -> None:
    assert [safety.flag_setting(v) for v in (None, "", "0", "false", "No", "OFF", "1", "yes")] == [False] * 6 + [True] * 2


def test_size_comparison_shows_bytes_when_megabytes_look_equal() -> None:
    assert safety.size_comparison(10 * 2**20 + 1, 10 * 2**20) == "10,485,761 bytes; the limit is 10,485,760 bytes"
    assert safety.size_comparison(50 * 2**20, 10 * 2**20) == "50.0 MB; the limit is 10 MB"


def test_only_marked_or_semindex_generations_are_the_index_s(tmp_path: Path) -> None:
    (tmp_path / "gen-000001").mkdir()
    safety.mark_generation(tmp_path / "gen-000001")
    (tmp_path / "gen-000002").mkdir()
    (tmp_path / "gen-000002" / "manifest.json").write_text('{"format": "semindex-index"}', encoding="utf-8")
    (tmp_path / "gen-notes").mkdir()
    (tmp_path / "gen-000003").mkdir()
    (tmp_path / "gen-000003" / "manifest.json").write_text('{"format": "other"}', encoding="utf-8")
    (tmp_path / "gen-000004").symlink_to(tmp_path / "gen-000001")
    assert [safety.is_generation(tmp_path / f"gen-00000{i}") for i in range(1, 5)] == [True, True, False, False]
    assert not safety.is_generation(tmp_path / "gen-notes")
    assert "gen-000003" in safety.index_folder_problem(tmp_path)


def test_an_index_folder_may_hold_only_what_semindex_writes(tmp_path: Path) -> None:
    assert safety.index_folder_problem(tmp_path / "new") is None
    (tmp_path / "CURRENT").write_text("gen-000001\n", encoding="utf-8")
    (tmp_path / ".lock").touch()
    (tmp_path / ".gitignore").touch()
    (tmp_path / ".building-gen-000002-123").mkdir()
    assert safety.index_folder_problem(tmp_path) is None
    (tmp_path / "notes.txt").touch()
    assert "notes.txt" in safety.index_folder_problem(tmp_path)
    assert "is a file" in safety.index_folder_problem(tmp_path / "notes.txt")


@pytest.mark.parametrize("name", ["/dev/zero", "../x", "a/../../b", "", "a//b", 5, "./x"])
def test_manifest_file_names_stay_inside_the_generation(tmp_path: Path, name) -> None:
    assert safety.generation_file_problem(tmp_path, name) is not None


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="not a regular file"):
        safety.read_regular(tmp_path / "pipe")
    assert "not a regular file" in safety.generation_file_problem(tmp_path, "pipe")


def test_recorded_corpus_refuses_absolute_and_pseudo_filesystems(tmp_path: Path) -> None:
    assert safety.recorded_corpus(tmp_path, "/proc") is None
    assert safety.recorded_corpus(tmp_path, "../" * 40 + "proc") is None
    assert safety.recorded_corpus(tmp_path, "../corpus") == tmp_path / "../corpus"


def test_a_passage_row_is_checked_field_by_field() -> None:
    good = {"id": 0, "text": "t", "kind": "body", "article": "a",
            "sources": [{"file": "f", "chars": [0, 1], "lines": [1, 1]}], "copy_group": 0}
    line = b'{"id":0}\n'
    assert integrity.row_problem(line, good, number=0, digests=None) is None
    assert "differ" in integrity.row_problem(line, good, number=0, digests=[integrity.row_digest(b"x")])
    assert "copy_group" in integrity.passage_problem({**good, "copy_group": "x"})
    assert "span" in integrity.passage_problem({**good, "sources": [{"file": "f", "chars": [3, 1], "lines": [1, 1]}]})
    assert "passage 5" in integrity.row_problem(line, {**good, "id": 5}, number=0, digests=None)


def test_copy_groups_hold_ids_of_the_index() -> None:
    assert integrity.groups_problem([[0, 1], [2, 3]], count=4) is None
    assert integrity.groups_problem([[0, 4]], count=4) is not None
    assert integrity.groups_problem({"0": [1]}, count=4) is not None
    assert integrity.group_problem([[0, 1]], 0, 1) is None
    assert integrity.group_problem([[0, 1]], 0, 2) is not None and integrity.group_problem([[0, 1]], 3, 0) is not None


def test_for_people_escapes_controls_and_keeps_text() -> None:
    assert for_people("a\x1b]0;x\x07b\tc\nd\u202ee\x9b") == "a\\x1b]0;x\\x07b\tc\nd\\u202ee\\x9b"
    assert one_line("two\nlines\x1b[2J") == "two lines\\x1b[2J"
    assert for_people(os.fsdecode(b"name\xff")) == "name\\xff"
    assert for_people("Grüße, 東京 — “quoted”") == "Grüße, 東京 — “quoted”"


def test_sanitized_reaches_into_nested_records() -> None:
    from query.results import Citation

    citation = Citation(file="f\x1b.txt", title="t\x07", publisher=None, url=None, published=None, lines=(1, 1),
                        chars=(0, 1))
    clean = sanitized({"k": [citation, Path("p\x1b")]})
    assert clean["k"][0].file == "f\\x1b.txt" and clean["k"][0].title == "t\\x07" and clean["k"][1] == Path("p\\x1b")


def test_a_zero_width_text_is_not_visible() -> None:
    assert not visible("\u200b\u200d \u2060\ufeff\t")
    assert visible("\u200bx")


def test_mcp_text_is_escaped_and_structured_content_exact() -> None:
    from query.mcp_server import answer_text, tool_result

    hit = {"rank": 1, "text": "ferries\x1b[2J return", "citation": {
        "title": "t\x07", "file": "f.txt", "publisher": None, "published": None, "url": None, "lines": [1, 1]}}
    data = {"answer": None, "confidence": 0.1, "hits": [hit], "warnings": ["w\x1b]0;x\x07"]}
    result = tool_result(data, answer_text(data))
    text = result.content[0].text
    assert "\x1b" not in text and "\x07" not in text and "ferries\\x1b[2J return" in text
    assert result.structured_content["hits"][0]["text"] == "ferries\x1b[2J return"
