"""What the CLI prints for people: answers, passages with their citations, the manifest and
result tables (rich). ``--json`` output is not here: it is the objects' own ``to_dict``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # markup and emoji codes off: corpus text, titles and file names may hold "[...]" or
    # ":fire:", which rich would read as style tags (and fail on, or drop) or replace with
    # emoji; styles are given as Text instead
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=False, width=None if stream.isatty() else 150)


def cite(citation) -> str:
    parts = [citation.title or citation.file, citation.publisher, citation.published, citation.url]
    where = f"{citation.file}:{citation.lines[0]}-{citation.lines[1]}"
    return ", ".join(p for p in parts if p) + f" [{where}]"


def print_hits(hits) -> None:
    from rich.table import Table

    table = Table(show_lines=True, expand=True)
    table.add_column("#", justify="right", width=2)
    table.add_column("score", justify="right", width=6)
    table.add_column("passage", ratio=3)
    table.add_column("citation", ratio=2, overflow="fold")
    for hit in hits:
        c = hit.citation
        lines = "\n".join(
            p for p in (
                c.title, ", ".join(x for x in (c.publisher, c.published) if x), c.url,
                f"{c.file} lines {c.lines[0]}-{c.lines[1]}",
            ) if p
        )
        text = hit.text if len(hit.text) <= 400 else hit.text[:400] + "…"
        table.add_row(str(hit.rank), f"{hit.score:.3f}", text, lines)
    console().print(table)


def print_answer(answer) -> None:
    """The answer highlighted in its passage with its citation (or that there is none), then the passages."""
    from rich.text import Text

    out = console()
    if answer.answer is None:
        out.print(Text.assemble(("No confident answer", "bold"),
                                f" in the corpus (confidence {answer.confidence:.2f}); nearest passages:"))
    else:
        hit = answer.hits[answer.answer_hit - 1]
        start = answer.answer_chars[0] - hit.citation.chars[0]
        end = answer.answer_chars[1] - hit.citation.chars[0]
        out.print(Text.assemble(("Answer: ", "bold"), (answer.answer, "bold green")))
        if hit.text.strip() != answer.answer.strip():
            out.print(Text.assemble(hit.text[:start], (hit.text[start:end], "bold reverse green"), hit.text[end:]))
        out.print(f"  — {cite(hit.citation)}  (confidence {answer.confidence:.2f})")
        out.print()
    print_hits(answer.hits)


def print_manifest(manifest: dict[str, Any], filterable: dict[str, Any] | None, *, folder: Path, generation: str) -> None:
    """``semindex info``: model, counts, files, linked bodies, skipped chrome and the filterable values."""
    from rich.table import Table
    from rich.text import Text

    out = console()
    model = manifest["model"]
    out.print(Text.assemble((str(folder / generation), "bold"), f" (format {manifest['format_version']}, built {manifest['built_at']})"))
    precision = model.get("precision", "fp32")
    if precision != "fp32":
        precision += f" (recipe {model.get('int8_recipe', 1)}, {model.get('int8_fp32_matmuls', 0)} MatMuls at fp32)"
    out.print(f"model {model['id']} ({model['dimension']} dims, {model['fingerprint'][:19]}…, {precision}), "
              f"FAISS {manifest['faiss']['factory']}, chunking {manifest['chunking']}")
    out.print("counts: " + ", ".join(f"{k} {v}" for k, v in manifest["counts"].items()))
    files = Table("file", "passages", "sha256", title="files")
    for name, entry in manifest["files"].items():
        files.add_row(name, str(entry["passages"]), entry["sha256"][:12])
    out.print(files)
    for link in manifest["links"]:
        out.print(f"linked body {link['file']} → {link['article']} (score {link['score']}, runner-up {link['runner_up']})")
    if manifest["chrome"]:
        chrome = Table("file", "lines", "kind", "text", title="left out as site chrome")
        for block in manifest["chrome"]:
            chrome.add_row(block["file"], f"{block['lines'][0]}-{block['lines'][1]}", block["kind"], block["text"])
        out.print(chrome)
    for problem in manifest["skipped"]:
        out.print(f"skipped: {problem}")
    print_filterable(out, filterable, folder=folder)


def print_filterable(out, filterable: dict[str, Any] | None, *, folder: Path) -> None:
    """The filterable values: dates, then a table of publishers and topics."""
    from rich.table import Table

    from indexer.manifest import rebuild_hint

    if filterable is None:
        out.print(f"filters: none (built before filters); {rebuild_hint(folder)}")
        return
    dates = filterable["dates"]
    out.print(f"filterable dates (--since/--until): {dates['first'] or '-'} to {dates['last'] or '-'}"
              f" ({dates['undated_passages']} passages undated)")
    table = Table("filter", "value", "passages", title="filterable values")
    for option, key in (("--publisher", "publishers"), ("--topic", "topics")):
        for entry in filterable[key]:
            table.add_row(option, entry["name"], str(entry["passages"]))
    out.print(table)


def print_rows(rows: list[dict[str, Any]], columns: list[str], *, title: str) -> None:
    """Evaluation rows as a table: floats to three places, None as ``-``."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column.replace("latency_", "").replace("_ms", " ms"), justify="right")
    for row in rows:
        table.add_row(*("-" if row[c] is None else f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    console().print(table)
