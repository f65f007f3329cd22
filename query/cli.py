"""The ``semindex`` command line: build, search, ask, info, eval.

Everything heavy is imported inside the command that needs it, so ``semindex --help``
stays fast and never imports torch.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

# Plain help and usage errors: typer's rich formatting costs ~0.3 s of imports per call.
os.environ.setdefault("TYPER_USE_RICH", "0")
import typer  # noqa: E402

app = typer.Typer(
    help="Local semantic search and question answering over a folder of articles, with citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CHECK_SCRATCH = re.compile(r"semindex-check-(?:(?P<pid>[0-9]+)-)?\w+")
"""``semindex build --check``'s temporary folders: ``semindex-check-<pid>-<random>`` (a killed
check's is removed by the next check), or ``semindex-check-<random>`` as made before the pid."""


class Precision(str, enum.Enum):
    """Embedding precision (``indexer.onnx_export.PRECISIONS``, kept in step by a test)."""

    fp32 = "fp32"
    int8 = "int8"


IndexOption = Annotated[
    Optional[Path], typer.Option("--index", help="Index folder (default: $SEMINDEX_INDEX, ./index, or the bundled index).")
]
ModeOption = Annotated[str, typer.Option("--mode", help="hybrid (default), dense or keyword.", callback=lambda v: _check_mode(v))]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
FaissParamsOption = Annotated[
    Optional[str], typer.Option("--faiss-params", help="FAISS search parameters, e.g. nprobe=64 or efSearch=256.")
]
ReaderOption = Annotated[Optional[str], typer.Option(
    "--reader", help="llm (a local model reads the top passages; needs semindex[reader]) or sentence (the sentence "
                     "picker). Default: llm where it is installed.", callback=lambda v: _check_reader(v))]


def _check_mode(mode: str) -> str:
    from query.searcher import MODES

    if mode not in MODES:
        raise typer.BadParameter(f"{mode!r} is not one of {', '.join(MODES)}", param_hint="--mode")
    return mode


def _check_reader(reader: str | None) -> str | None:
    if reader is not None and reader not in ("llm", "sentence"):
        raise typer.BadParameter(f"{reader!r} is not one of llm, sentence", param_hint="--reader")
    return reader


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # markup and emoji codes off: corpus text, titles and file names may hold "[...]" or
    # ":fire:", which rich would read as style tags (and fail on, or drop) or replace with
    # emoji; styles are given as Text instead
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=False, width=None if stream.isatty() else 150)


def _warn(message: str) -> None:
    print(f"warning: {' '.join(message.split())}", file=sys.stderr)


@app.command()
def build(
    corpus: Annotated[Path, typer.Argument(help="Folder of .txt/.md articles.")] = Path("corpus"),
    index: Annotated[Path, typer.Option("--index", help="Index folder to create or replace.")] = Path("index"),
    model: Annotated[Optional[str], typer.Option("--model", help="sentence-transformers model name or folder.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=8, help="Passage size in model tokens (at least 8).")] = None,
    faiss_factory: Annotated[Optional[str], typer.Option("--faiss", help="FAISS factory string (default: by size).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Rebuild into a temporary folder and fail if INDEX differs.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Re-embed every passage (default: reuse the vectors of unchanged text).")] = False,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Embed passages with the fp32 ONNX export or its int8 quantization (~2.3x faster; checked to keep mean cosine >= 0.98 to fp32, else a default build embeds at fp32). Default: INDEX's current precision, else int8.")] = None,
) -> None:
    """Index CORPUS into INDEX (a new generation, switched in atomically)."""
    from indexer.build import build_index, live_chunking, live_factory, live_precision
    from indexer.chunking import ChunkSettings

    settings = ChunkSettings(max_tokens=max_tokens) if max_tokens is not None else None
    chosen = precision.value if precision else None
    if check:
        import tempfile

        from indexer.compare import build_command, compare_indexes
        from indexer.scratch import remove_leftovers

        remove_leftovers(Path(tempfile.gettempdir()), pattern=CHECK_SCRATCH)
        with tempfile.TemporaryDirectory(prefix=f"semindex-check-{os.getpid()}-") as scratch:
            fresh = Path(scratch) / "index"
            build_index(corpus=corpus, index=fresh, model=model, settings=settings or live_chunking(index),
                        factory=faiss_factory or live_factory(index), warn=_warn, precision=chosen or live_precision(index))
            problems = compare_indexes(expected=fresh, actual=index)
        if problems:
            for problem in problems:
                print(f"{index}: stale: {problem}", file=sys.stderr)
            rebuild = build_command(corpus=corpus, index=index, model=model, max_tokens=max_tokens, factory=faiss_factory,
                                    precision=chosen)
            print(f"rebuild it with: {rebuild}", file=sys.stderr)
            raise typer.Exit(1)
        print(f"{index}: up to date with {corpus}")
        return
    report = build_index(
        corpus=corpus, index=index, model=model, settings=settings, factory=faiss_factory, warn=_warn, progress=True,
        full=full, precision=chosen,
    )
    from rich.text import Text

    console = _console()
    if report.unchanged:
        console.print(f"{report.index}/{report.generation} is up to date with {corpus} ({report.passages} passages); nothing to do")
        return
    console.print(Text.assemble(
        "Indexed ", (str(report.passages), "bold"), f" passages from {report.files} files ({report.articles} articles) "
        f"into {report.index}/{report.generation} in {report.seconds:.1f}s",
    ))
    if not report.full:
        changes = report.changes
        console.print(
            f"  {changes['added']} files added, {changes['changed']} changed, {changes['removed']} removed; "
            f"embedded {report.embedded} passages, reused {report.reused}"
        )
    for link in report.links:
        console.print(f"  linked {link['file']} → {link['article']} (score {link['score']:.2f})")
    if report.chrome_blocks:
        console.print(f"  left out {report.chrome_blocks} blocks of site chrome (see: semindex info)")
    if report.skipped:
        console.print(f"  skipped {len(report.skipped)} files (warnings above)")


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many passages.")] = 5,
    index: IndexOption = None,
    mode: ModeOption = "hybrid",
    faiss_params: FaissParamsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ranked passages for QUESTION, each with its citation."""
    from query.searcher import open_searcher

    searcher = open_searcher(index, faiss_params=faiss_params)
    hits = searcher.search(question, k=k, mode=mode)
    warning = searcher.stale_warning()
    if warning:
        _warn(warning)
    if as_json:
        data = {"query": question, "mode": mode, "hits": [h.to_dict() for h in hits], "warnings": [warning] if warning else []}
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    _print_hits(hits)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="A question about the corpus.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many passages to show.")] = 5,
    index: IndexOption = None,
    mode: ModeOption = "hybrid",
    faiss_params: FaissParamsOption = None,
    as_json: JsonOption = False,
    reader: ReaderOption = None,
    reader_model: Annotated[Optional[Path], typer.Option("--reader-model", help="A GGUF model file for --reader llm "
                                                         "(default: the model semindex[reader] installs).")] = None,
) -> None:
    """A short answer with its citation (or none), and the passages behind it."""
    from query.llm_reader import ask_with_reader

    answer = ask_with_reader(question, reader=reader, reader_model=reader_model, index=index, k=k, mode=mode,
                             faiss_params=faiss_params)
    for warning in answer.warnings:
        _warn(warning)
    if as_json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return
    from rich.text import Text

    console = _console()
    if answer.answer is None:
        console.print(Text.assemble(("No confident answer", "bold"),
                                    f" in the corpus (confidence {answer.confidence:.2f}); nearest passages:"))
    else:
        hit = answer.hits[answer.answer_hit - 1]
        start = answer.answer_chars[0] - hit.citation.chars[0]
        end = answer.answer_chars[1] - hit.citation.chars[0]
        console.print(Text.assemble(("Answer: ", "bold"), (answer.answer, "bold green")))
        if hit.text.strip() != answer.answer.strip():
            console.print(Text.assemble(hit.text[:start], (hit.text[start:end], "bold reverse green"), hit.text[end:]))
        console.print(f"  — {_cite(hit.citation)}  (confidence {answer.confidence:.2f})")
        console.print()
    _print_hits(answer.hits)


def _cite(citation) -> str:
    parts = [citation.title or citation.file, citation.publisher, citation.published, citation.url]
    where = f"{citation.file}:{citation.lines[0]}-{citation.lines[1]}"
    return ", ".join(p for p in parts if p) + f" [{where}]"


def _print_hits(hits) -> None:
    from rich.table import Table

    table = Table(show_lines=True, expand=True)
    table.add_column("#", justify="right", width=2)
    table.add_column("score", justify="right", width=6)
    table.add_column("passage", ratio=3)
    table.add_column("citation", ratio=2, overflow="fold")
    for hit in hits:
        c = hit.citation
        cite = "\n".join(
            p for p in (
                c.title, ", ".join(x for x in (c.publisher, c.published) if x), c.url,
                f"{c.file} lines {c.lines[0]}-{c.lines[1]}",
            ) if p
        )
        text = hit.text if len(hit.text) <= 400 else hit.text[:400] + "…"
        table.add_row(str(hit.rank), f"{hit.score:.3f}", text, cite)
    _console().print(table)


@app.command()
def info(
    index: IndexOption = None,
    verify: Annotated[bool, typer.Option("--verify", help="Checksum every index file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The index's manifest: model, counts, files, linked bodies, skipped chrome."""
    from indexer.store import StoredIndex
    from query.searcher import default_index

    stored = StoredIndex.open(index or default_index(), verify=verify or None)
    manifest = stored.manifest
    if as_json:
        print(json.dumps(manifest, ensure_ascii=False, indent=2))
        return
    from rich.table import Table
    from rich.text import Text

    console = _console()
    model = manifest["model"]
    console.print(Text.assemble((str(stored.generation), "bold"), f" (format {manifest['format_version']}, built {manifest['built_at']})"))
    precision = model.get("precision", "fp32")
    if precision != "fp32":
        precision += f" (recipe {model.get('int8_recipe', 1)}, {model.get('int8_fp32_matmuls', 0)} MatMuls at fp32)"
    console.print(f"model {model['id']} ({model['dimension']} dims, {model['fingerprint'][:19]}…, {precision}), "
                  f"FAISS {manifest['faiss']['factory']}, chunking {manifest['chunking']}")
    console.print("counts: " + ", ".join(f"{k} {v}" for k, v in manifest["counts"].items()))
    files = Table("file", "passages", "sha256", title="files")
    for name, entry in manifest["files"].items():
        files.add_row(name, str(entry["passages"]), entry["sha256"][:12])
    console.print(files)
    for link in manifest["links"]:
        console.print(f"linked body {link['file']} → {link['article']} (score {link['score']}, runner-up {link['runner_up']})")
    if manifest["chrome"]:
        chrome = Table("file", "lines", "kind", "text", title="left out as site chrome")
        for block in manifest["chrome"]:
            chrome.add_row(block["file"], f"{block['lines'][0]}-{block['lines'][1]}", block["kind"], block["text"])
        console.print(chrome)
    for problem in manifest["skipped"]:
        console.print(f"skipped: {problem}")


@app.command("eval")
def evaluate(
    target: Annotated[Path, typer.Argument(help="Gold questions YAML, a folder in BEIR layout, or a SQuAD JSON file.")],
    index: IndexOption = None,
    mode: Annotated[list[str], typer.Option("--mode", help="Mode(s) to evaluate; repeat for several.")] = ["hybrid"],
    split: Annotated[Optional[str], typer.Option("--split", help="BEIR qrels split (default: test where the folder has it, else its only split).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate only the first N queries.")] = None,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Embedding precision of a BEIR corpus's cached index (default: as semindex build).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model that embeds a BEIR corpus (name or folder; default: the bundled MiniLM).")] = None,
    as_json: JsonOption = False,
    reader: ReaderOption = None,
) -> None:
    """nDCG@10, Recall@10/100, MRR@10, hit@1/3, abstain and answer accuracy, and latency for TARGET;
    for SQuAD JSON: em, f1, answered, wrong, abstain, para@1/5 and latency of the answers."""
    from indexer.errors import SemindexError
    from query.evaluate import evaluate_beir, evaluate_gold
    from query.squad import is_squad

    modes = [_check_mode(m) for m in mode]
    if target.is_file() and is_squad(target):
        _evaluate_squad(target, index=index, modes=modes, split=split, limit=limit, precision=precision, model=model,
                        reader=reader, as_json=as_json)
        return
    if reader is not None:
        raise SemindexError(f"{target}: --reader applies to a SQuAD JSON file")
    if target.is_dir():
        if index is not None:
            raise SemindexError(f"{target}: --index applies to gold questions; a BEIR folder is indexed into its own cache")
        reports = [evaluate_beir(target, split=split, mode=m, limit=limit, progress=not as_json,
                                 model=model, precision=precision.value if precision else None) for m in modes]
    elif target.is_file():
        beir_only = [flag for flag, value in (("--model", model), ("--split", split), ("--precision", precision))
                     if value is not None]
        if beir_only:
            raise SemindexError(f"{target}: {', '.join(beir_only)} {'apply' if len(beir_only) > 1 else 'applies'} to a "
                                "BEIR folder; gold questions are asked of the index as it was built")
        reports = [evaluate_gold(target, index=index, mode=m, limit=limit) for m in modes]
    else:
        raise SemindexError(f"{target}: no such gold questions file or BEIR folder")
    for warning in dict.fromkeys(warning for report in reports for warning in report.warnings):  # once, not per mode
        _warn(warning)
    rows = [report.to_dict() for report in reports]
    if as_json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{target}" + (f" ({rows[0]['split']} split)" if rows[0]["split"] else ""))
    columns = ["mode", "ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@1", "hit@3", "abstain", "answer", "queries",
               "latency_mean_ms", "latency_p95_ms"]
    for column in columns:
        table.add_column(column.replace("latency_", "").replace("_ms", " ms"), justify="right")
    for row in rows:
        table.add_row(*("-" if row[c] is None else f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    _console().print(table)


def _evaluate_squad(target: Path, *, index, modes: list[str], split, limit, precision, model, reader, as_json) -> None:
    """``semindex eval`` of a SQuAD JSON file: its articles indexed into the eval cache, each
    question asked end to end with the reader."""
    from indexer.errors import SemindexError
    from query.squad import evaluate_squad

    given = [flag for flag, value in (("--index", index), ("--split", split), ("--precision", precision),
                                      ("--model", model)) if value is not None]
    if given:
        raise SemindexError(f"{target}: {', '.join(given)} do(es) not apply to a SQuAD file; it is indexed into its own cache")
    from query.llm_reader import reader_available

    reader = reader or ("llm" if reader_available() is None else "sentence")
    rows = [evaluate_squad(target, reader=reader, mode=m, limit=limit, progress=not as_json).to_dict()
            for m in modes]
    if as_json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=str(target))
    columns = ["mode", "reader", "em", "f1", "answered", "wrong", "abstain", "para@1", "para@5", "answerable",
               "unanswerable", "latency_p50_ms", "latency_p95_ms"]
    for column in columns:
        table.add_column(column.replace("latency_", "").replace("_ms", " ms"), justify="right")
    for row in rows:
        table.add_row(*("-" if row[c] is None else f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    _console().print(table)


def _usage_error_line(error: Exception, *, args: list[str]) -> str:
    """``error: COMMAND: MESSAGE`` for a click usage error, on one line. An error without a
    context (an option missing its value) names the command ``args`` start with, if any;
    COMMAND is ``semindex`` for an unknown command or option."""
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        command = ctx.info_name if ctx.parent is not None else "semindex"
    else:
        first = next((arg for arg in args if not arg.startswith("-")), None)
        command = first if first in typer.main.get_command(app).commands else "semindex"
    return f"error: {command}: {' '.join(error.format_message().split())}"


def main() -> None:
    """Entry point: run the app, turning known errors and usage errors into one line and exit code 2."""
    from indexer.errors import SemindexError

    # recent typer raises the errors of its own copy of click (typer._click), older typer those
    # of click: either way, a base of typer.BadParameter
    usage_error = next(base for base in typer.BadParameter.__mro__ if base.__name__ == "UsageError")
    try:
        # not standalone: click returns exit codes (--help, typer.Exit, 130 for Ctrl-C) and raises
        # usage errors instead of printing them as a usage box
        sys.exit(app(standalone_mode=False))
    except usage_error as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # plain `semindex`: the help, as click shows it
            error.show()
        else:
            print(_usage_error_line(error, args=sys.argv[1:]), file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.Abort:  # end of input at a prompt
        print("error: aborted", file=sys.stderr)
        sys.exit(1)
    except SemindexError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # the disk is full, a path is a file where a folder must be, ...
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
