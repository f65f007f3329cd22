"""Cold start: a fresh `semindex ask` process vs `python -c "import torch"`, side by side.

    python bench/coldstart.py [--runs 5]

Each command runs as a new process, interleaved round by round so both see the same
machine load; the table gives the median and min wall time. The target: the ratio
ask / import torch below 1.0, and `semindex --help` under 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, cwd=ROOT, capture_output=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    semindex = str(BIN / "semindex")
    commands = {
        "semindex --help": [semindex, "--help"],
        'semindex ask "Who runs EleutherAI?"': [semindex, "ask", "Who runs EleutherAI?", "--index", str(ROOT / "index")],
        'semindex search "Who runs EleutherAI?"': [semindex, "search", "Who runs EleutherAI?", "--index", str(ROOT / "index")],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        'python -c "import sentence_transformers"': [sys.executable, "-c", "import sentence_transformers"],
    }
    timed(commands['semindex ask "Who runs EleutherAI?"'])  # make sure the ONNX export exists
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            times[name].append(timed(command))
    print(f"| command (fresh process, {args.runs} runs, {os.cpu_count()} cores) | median s | min s |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| `{name}` | {statistics.median(values):.2f} | {min(values):.2f} |")
    ratio = statistics.median(times['semindex ask "Who runs EleutherAI?"']) / statistics.median(times['python -c "import torch"'])
    print(f"ratio cold ask / import torch (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
