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
    Optional[Path], typer.Option("--index", help="Index folder (default: $SEMINDEX_INDEX, ./index, or the bundled index).",
                                 callback=lambda value: _utf8_path(value))
]
ModeOption = Annotated[str, typer.Option("--mode", help="hybrid (default), dense or keyword.", callback=lambda v: _check_mode(v))]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
FaissParamsOption = Annotated[
    Optional[str], typer.Option("--faiss-params", help="FAISS search parameters, e.g. nprobe=64 or efSearch=256.")
]
SinceOption = Annotated[Optional[str], typer.Option(
    "--since", metavar="DATE", help="Only articles published on or after DATE (YYYY-MM-DD, YYYY-MM or YYYY).",
    callback=lambda v: _check_date(v, "--since"))]
UntilOption = Annotated[Optional[str], typer.Option(
    "--until", metavar="DATE", help="Only articles published on or before DATE (YYYY-MM-DD, YYYY-MM or YYYY).",
    callback=lambda v: _check_date(v, "--until", last=True))]
PublisherOption = Annotated[Optional[str], typer.Option("--publisher", metavar="NAME", help="Only articles of this publisher (any case).")]
TopicOption = Annotated[Optional[str], typer.Option("--topic", metavar="T", help="Only articles with this topic (any case).")]
PathOption = Annotated[Optional[str], typer.Option("--path", metavar="GLOB", help="Only passages of corpus files matching GLOB (e.g. 'news/*.md').")]


def _check_date(value: str | None, option: str, *, last: bool = False) -> str | None:
    from indexer.errors import QueryError
    from query.filters import parse_day

    if value is not None:
        try:
            parse_day(value, name=option, last=last)
        except QueryError as error:
            raise typer.BadParameter(str(error).split(": ", 1)[1], param_hint=option) from None
    return value


def _utf8_path(path: Path | None) -> Path | None:
    """A path given on the command line, refused in one line when it is not valid UTF-8."""
    from indexer.safety import path_problem

    if path is not None and (problem := path_problem(path)):
        raise typer.BadParameter(problem)
    return path


def _warn(message: str) -> None:
    from query.cli_output import warn

    warn(message)


ReaderOption = Annotated[Optional[str], typer.Option(
    "--reader", help="llm (a local model reads the top passages; needs semindex[reader]) or sentence (the sentence "
                     "picker). Default: llm where it is installed.", callback=lambda v: _check_reader(v))]


def _check_reader(reader: str | None) -> str | None:
    if reader is not None and reader not in ("llm", "sentence"):
        raise typer.BadParameter(f"{reader!r} is not one of llm, sentence", param_hint="--reader")
    return reader


def _check_mode(mode: str) -> str:
    from query.searcher import MODES

    if mode not in MODES:
        raise typer.BadParameter(f"{mode!r} is not one of {', '.join(MODES)}", param_hint="--mode")
    return mode


@app.command()
def build(
    corpus: Annotated[Path, typer.Argument(help="Folder of .txt/.md articles.", callback=_utf8_path)] = Path("corpus"),
    index: Annotated[Path, typer.Option("--index", help="Index folder to create or replace.", callback=_utf8_path)] = Path("index"),
    model: Annotated[Optional[str], typer.Option("--model", help="sentence-transformers model name or folder.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=8, help="Passage size in model tokens (at least 8).")] = None,
    faiss_factory: Annotated[Optional[str], typer.Option("--faiss", help="FAISS factory string (default: by size).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Rebuild into a temporary folder and fail if INDEX differs.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Re-embed every passage (default: reuse the vectors of unchanged text).")] = False,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Embed passages with the fp32 ONNX export or its int8 quantization (~2.3x faster; checked to keep mean cosine >= 0.98 to fp32, else a default build embeds at fp32). Default: INDEX's current precision, else int8.")] = None,
    follow_links: Annotated[bool, typer.Option("--follow-links", help="Index files that symbolic links lead to outside CORPUS (default: skip them, with a note).")] = False,
    ray: Annotated[Optional[str], typer.Option("--ray", metavar="ADDRESS", help="Read, cut and embed on a Ray cluster: 'local' (start one here), 'auto', or the head's host:port. Needs semindex[ray] on every node, and the corpus at the same path on each (a shared filesystem).")] = None,
) -> None:
    """Index CORPUS into INDEX (a new generation, switched in atomically)."""
    from indexer.build import build_index
    from indexer.chunking import ChunkSettings
    from indexer.manifest import KeptSettings

    settings = ChunkSettings(max_tokens=max_tokens) if max_tokens is not None else None
    chosen = precision.value if precision else None
    if check:
        import tempfile

        from indexer.compare import build_command, compare_indexes
        from indexer.scratch import remove_leftovers

        remove_leftovers(Path(tempfile.gettempdir()), pattern=CHECK_SCRATCH)
        with tempfile.TemporaryDirectory(prefix=f"semindex-check-{os.getpid()}-") as scratch:
            fresh = Path(scratch) / "index"
            kept = KeptSettings.of(index)
            build_index(corpus=corpus, index=fresh, model=model, settings=settings or kept.chunking,
                        factory=faiss_factory or kept.factory, warn=_warn, precision=chosen or kept.precision(),
                        follow_links=follow_links, ray=ray)
            problems = compare_indexes(expected=fresh, actual=index)
        from query.display import for_people, one_line

        if problems:
            for problem in problems:
                print(one_line(f"{index}: stale: {problem}"), file=sys.stderr)
            rebuild = build_command(corpus=corpus, index=index, model=model, max_tokens=max_tokens, factory=faiss_factory,
                                    precision=chosen)
            print(one_line(f"rebuild it with: {rebuild}"), file=sys.stderr)
            raise typer.Exit(1)
        print(for_people(f"{index}: up to date with {corpus}"))
        return
    report = build_index(
        corpus=corpus, index=index, model=model, settings=settings, factory=faiss_factory, warn=_warn, progress=True,
        full=full, precision=chosen, follow_links=follow_links, ray=ray,
    )
    from query.cli_output import print_build_report

    print_build_report(report, corpus=corpus)


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many passages.")] = 5,
    index: IndexOption = None,
    mode: ModeOption = "hybrid",
    faiss_params: FaissParamsOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    publisher: PublisherOption = None,
    topic: TopicOption = None,
    path: PathOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ranked passages for QUESTION, each with its citation."""
    from query.filters import Filters
    from query.index import Index
    from query.results import search_to_dict

    opened = Index.open(index)
    filters = Filters.from_args(since=since, until=until, publisher=publisher, topic=topic, path=path)
    hits = opened.search(question, k=k, mode=mode, faiss_params=faiss_params, **_filter_args(filters))
    warning = opened.stale_warning()
    if warning:
        _warn(warning)
    if as_json:
        data = search_to_dict(question, mode=mode, hits=hits, warning=warning, filters=filters)
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    if not hits:
        print("No passages found" + (" (no passage matches the filters)" if filters.active else ""))
        return
    from query.cli_output import print_hits

    print_hits(hits)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="A question about the corpus.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many passages to show.")] = 5,
    index: IndexOption = None,
    mode: ModeOption = "hybrid",
    faiss_params: FaissParamsOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    publisher: PublisherOption = None,
    topic: TopicOption = None,
    path: PathOption = None,
    reader: ReaderOption = None,
    reader_model: Annotated[Optional[Path], typer.Option("--reader-model", help="A GGUF model file for --reader llm "
                                                         "(default: the model semindex[reader] installs).")] = None,
    as_json: JsonOption = False,
) -> None:
    """A short answer with its citation (or none), and the passages behind it."""
    from query.filters import Filters
    from query.index import Index
    from query.llm_reader import default_reader_note, reader_for

    filters = Filters.from_args(since=since, until=until, publisher=publisher, topic=topic, path=path)
    answer = Index.open(index).ask(question, k=k, mode=mode, faiss_params=faiss_params,
                                   reader=reader_for(reader, model=reader_model), **_filter_args(filters))
    if reader is None and reader_model is None and (note := default_reader_note()):
        answer.warnings.append(note)
    for warning in answer.warnings:
        _warn(warning)
    if as_json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return
    from query.cli_output import print_answer

    print_answer(answer)


def _filter_args(filters) -> dict:
    """``filters`` as the keyword arguments of ``Index.search``/``Index.ask``."""
    import dataclasses

    return dataclasses.asdict(filters)


@app.command()
def info(
    index: IndexOption = None,
    verify: Annotated[bool, typer.Option("--verify", help="Checksum every index file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The index's manifest (model, counts, files, linked bodies, skipped chrome) and what a
    search can be filtered by (--json: the manifest, with the filterable values under "filterable")."""
    from query.index import Index, default_index

    folder = index or default_index()
    opened = Index.open(folder)
    manifest = opened.info(verify=verify)
    filterable = opened.filterable()
    if as_json:
        print(json.dumps({**manifest, "filterable": filterable}, ensure_ascii=False, indent=2))
        return
    from query.cli_output import print_info

    print_info(manifest, filterable, folder=folder, generation=opened.generation)


@app.command()
def serve(
    index: IndexOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind (another than loopback needs --token or --no-auth).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[Optional[str], typer.Option("--token", help="Require Authorization: Bearer TOKEN on the API.")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve another address than loopback without a token.")] = False,
    cors: Annotated[list[str], typer.Option("--cors", help="Allow browser calls from ORIGIN; repeat for several.")] = [],
) -> None:
    """HTTP API, MCP at /mcp and a search page at / over one warm index (needs semindex[serve])."""
    from query.index import default_index
    from query.serve import ServeOptions, run_server

    run_server(ServeOptions(index=index or default_index(), host=host, port=port, token=token, no_auth=no_auth,
                            cors=tuple(cors)))


@app.command()
def mcp(index: IndexOption = None) -> None:
    """The MCP tools search, ask and info over stdio, for an assistant to start (needs semindex[serve])."""
    from query.index import default_index
    from query.serve import run_mcp

    run_mcp(index or default_index())


@app.command("eval")
def evaluate(
    target: Annotated[list[Path], typer.Argument(help="Gold questions YAML, a folder in BEIR layout, or a SQuAD JSON file; several: one table and a mean row.")],
    index: IndexOption = None,
    mode: Annotated[list[str], typer.Option("--mode", help="Mode(s) to evaluate; repeat for several.")] = ["hybrid"],
    split: Annotated[Optional[str], typer.Option("--split", help="BEIR qrels split (default: test where the folder has it, else its only split).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate only the first N queries.")] = None,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="Embedding precision of a BEIR corpus's cached index (default: as semindex build).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model that embeds a BEIR corpus (name or folder; default: the bundled MiniLM).")] = None,
    reader: ReaderOption = None,
    as_json: JsonOption = False,
) -> None:
    """nDCG@10, Recall@10/100, MRR@10, hit@1/3, abstain and answer accuracy, and latency for TARGET;
    for SQuAD JSON: em, f1, answered, wrong, abstain, para@1/5 and latency of the answers."""
    from query.evaluate import summary_rows

    modes = [_check_mode(m) for m in mode]
    options = dict(index=index, modes=modes, split=split, limit=limit, precision=precision, model=model, reader=reader,
                   progress=not as_json)
    if len(target) > 1:
        results = [(path, _eval_rows(path, **options)[0]) for path in target]
        summary = summary_rows(results, modes=modes)
        if as_json:
            print(json.dumps({"targets": [row for _, rows in results for row in rows], "summary": summary}, indent=2))
            return
        from query.cli_output import print_eval_summary

        print_eval_summary(summary)
        return
    rows, columns = _eval_rows(target[0], **options)
    if as_json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return
    from query.cli_output import print_eval

    print_eval(rows, target=target[0], columns=columns)


def _eval_rows(target: Path, *, index, modes: list[str], split, limit, precision, model, reader,
               progress: bool) -> tuple[list[dict], list[str]]:
    """One target's report per mode as dicts, and the columns to print them in."""
    from indexer.errors import SemindexError
    from query.cli_output import EVAL_COLUMNS, SQUAD_COLUMNS
    from query.evaluate import evaluate_beir, evaluate_gold
    from query.squad import evaluate_squad, is_squad

    if target.is_file() and is_squad(target):
        given = [flag for flag, value in (("--index", index), ("--split", split), ("--precision", precision),
                                          ("--model", model)) if value is not None]
        if given:
            raise SemindexError(f"{target}: {', '.join(given)} do(es) not apply to a SQuAD file; it is indexed into its own cache")
        from query.llm_reader import reader_available

        reader = reader or ("llm" if reader_available() is None else "sentence")
        rows = [evaluate_squad(target, reader=reader, mode=m, limit=limit, progress=progress).to_dict() for m in modes]
        return rows, SQUAD_COLUMNS
    if reader is not None:
        raise SemindexError(f"{target}: --reader applies to a SQuAD JSON file")
    if target.is_dir():
        if index is not None:
            raise SemindexError(f"{target}: --index applies to gold questions; a BEIR folder is indexed into its own cache")
        reports = [evaluate_beir(target, split=split, mode=m, limit=limit, progress=progress,
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
    return [report.to_dict() for report in reports], EVAL_COLUMNS


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
    from query.display import one_line

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
            print(one_line(_usage_error_line(error, args=sys.argv[1:])), file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.Abort:  # end of input at a prompt
        print("error: aborted", file=sys.stderr)
        sys.exit(1)
    except SemindexError as error:
        print(f"error: {one_line(str(error))}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # the disk is full, a path is a file where a folder must be, ...
        where = f"{error.filename}: " if error.filename else ""
        print(one_line(f"error: {where}{error.strerror or error}"), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
