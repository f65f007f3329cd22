"""What the ``semindex`` commands print for people: tables, reports and warnings.

Everything here passes through :mod:`query.display`, so a file name, a passage or a
manifest field holding escape sequences is shown, never obeyed; ``--json`` output is
printed by the commands themselves and stays exact.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from query.display import for_people, one_line, sanitized


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # markup and emoji codes off: corpus text, titles and file names may hold "[...]" or
    # ":fire:", which rich would read as style tags (and fail on, or drop) or replace with
    # emoji; styles are given as Text instead
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=False, width=None if stream.isatty() else 150)


def warn(message: str) -> None:
    print(f"warning: {one_line(message)}", file=sys.stderr)


def print_build_report(report, *, corpus: Path) -> None:
    """What a build did: passages, files and articles indexed, changes, links, chrome, skips."""
    from rich.text import Text

    report, corpus = sanitized((report, corpus))
    out = console()
    if report.unchanged:
        out.print(f"{report.index}/{report.generation} is up to date with {corpus} ({report.passages} passages); nothing to do")
        return
    out.print(Text.assemble(
        "Indexed ", (str(report.passages), "bold"), f" passages from {report.files} files ({report.articles} articles) "
        f"into {report.index}/{report.generation} in {report.seconds:.1f}s",
    ))
    if not report.full:
        changes = report.changes
        out.print(
            f"  {changes['added']} files added, {changes['changed']} changed, {changes['removed']} removed; "
            f"embedded {report.embedded} passages, reused {report.reused}"
        )
    for link in report.links:
        out.print(f"  linked {link['file']} → {link['article']} (score {link['score']:.2f})")
    if report.cluster:
        ray = report.cluster
        done = [f"{stage} {ray[stage][unit]} {unit} in {ray[stage]['tasks']} tasks"
                for stage, unit in (("read", "files"), ("cut", "passages")) if stage in ray]
        if ray["workers"]:
            done.append(f"embedded {sum(worker['passages'] for worker in ray['workers'])} passages "
                        f"by {len(ray['workers'])} workers")
        out.print(f"  on Ray at {ray['address']}: {', '.join(done)}")
    if report.chrome_blocks:
        out.print(f"  left out {report.chrome_blocks} blocks of site chrome (see: semindex info)")
    if report.skipped:
        out.print(f"  skipped {len(report.skipped)} files (warnings above)")


def print_answer(answer) -> None:
    """``ask``'s short answer (highlighted in its passage) with its citation, then the passages."""
    from rich.text import Text

    out = console()
    if answer.answer is None:
        out.print(Text.assemble(("No confident answer", "bold"),
                                f" in the corpus (confidence {answer.confidence:.2f}); nearest passages:"))
    else:
        hit = answer.hits[answer.answer_hit - 1]
        start = answer.answer_chars[0] - hit.citation.chars[0]
        end = answer.answer_chars[1] - hit.citation.chars[0]
        pieces = sanitized((answer.answer, hit.text[:start], hit.text[start:end], hit.text[end:], hit))
        out.print(Text.assemble(("Answer: ", "bold"), (pieces[0], "bold green")))
        if hit.text.strip() != answer.answer.strip():
            out.print(Text.assemble(pieces[1], (pieces[2], "bold reverse green"), pieces[3]))
        out.print(f"  — {cite(pieces[4].citation)}  (confidence {answer.confidence:.2f})")
        out.print()
    print_hits(answer.hits)


def cite(citation) -> str:
    parts = [citation.title or citation.file, citation.publisher, citation.published, citation.url]
    where = f"{citation.file}:{citation.lines[0]}-{citation.lines[1]}"
    return ", ".join(p for p in parts if p) + f" [{where}]"


def print_hits(hits) -> None:
    from rich.table import Table

    hits = sanitized(hits)
    table = Table(show_lines=True, expand=True)
    table.add_column("#", justify="right", width=2)
    table.add_column("score", justify="right", width=6)
    table.add_column("passage", ratio=3)
    table.add_column("citation", ratio=2, overflow="fold")
    for hit in hits:
        c = hit.citation
        citation = "\n".join(
            p for p in (
                c.title, ", ".join(x for x in (c.publisher, c.published) if x), c.url,
                f"{c.file} lines {c.lines[0]}-{c.lines[1]}",
            ) if p
        )
        text = hit.text if len(hit.text) <= 400 else hit.text[:400] + "…"
        table.add_row(str(hit.rank), f"{hit.score:.3f}", text, citation)
    console().print(table)


def print_info(manifest: Any, filterable: Any, *, folder: Path, generation: str) -> None:
    """The manifest (model, counts, files, linked bodies, skipped chrome) and the filterable values."""
    from rich.table import Table
    from rich.text import Text

    manifest, filterable, where = sanitized((dict(manifest), filterable, folder / generation))
    out = console()
    model = manifest["model"]
    out.print(Text.assemble((str(where), "bold"), f" (format {manifest['format_version']}, built {manifest['built_at']})"))
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
    _print_filterable(out, filterable, folder=folder)


def _print_filterable(out, filterable, *, folder: Path) -> None:
    """The filterable values: dates, then a table of publishers and topics."""
    from rich.table import Table

    from indexer.manifest import rebuild_hint

    if filterable is None:
        out.print(for_people(f"filters: none (built before filters); {rebuild_hint(folder)}"))
        return
    dates = filterable["dates"]
    out.print(f"filterable dates (--since/--until): {dates['first'] or '-'} to {dates['last'] or '-'}"
              f" ({dates['undated_passages']} passages undated)")
    table = Table("filter", "value", "passages", title="filterable values")
    for option, key in (("--publisher", "publishers"), ("--topic", "topics")):
        for entry in filterable[key]:
            table.add_row(option, entry["name"], str(entry["passages"]))
    out.print(table)


EVAL_COLUMNS = ["mode", "ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@1", "hit@3", "abstain", "answer", "queries",
                "latency_mean_ms", "latency_p95_ms"]


SQUAD_COLUMNS = ["mode", "reader", "em", "f1", "answered", "wrong", "abstain", "para@1", "para@5", "answerable",
                 "unanswerable", "latency_p50_ms", "latency_p95_ms"]


def print_eval_summary(rows: list[dict[str, Any]]) -> None:
    """``semindex eval`` of several targets: each target's headline measure per mode, then the
    mean of each mode over the targets."""
    from rich.table import Table

    table = Table(title="semindex eval")
    for column in ("target", "mode", "measure", "score", "queries"):
        table.add_column(column, justify="left" if column in ("target", "measure") else "right")
    for row in rows:
        score = "-" if row["score"] is None else f"{row['score']:.3f}"
        table.add_row(for_people(row["target"]), row["mode"], row["measure"], score,
                      "-" if row["queries"] is None else str(row["queries"]))
    console().print(table)


def print_eval(rows: list[dict[str, Any]], *, target: Path, columns: list[str] = EVAL_COLUMNS) -> None:
    """The metrics of each evaluated mode, one row each."""
    from rich.table import Table

    split = rows[0].get("split")
    table = Table(title=for_people(str(target)) + (f" ({split} split)" if split else ""))
    for column in columns:
        table.add_column(column.replace("latency_", "").replace("_ms", " ms"), justify="right")
    for row in rows:
        table.add_row(*("-" if row[c] is None else f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    console().print(table)
