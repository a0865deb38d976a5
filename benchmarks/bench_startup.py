"""How long the CLI takes to start: `invoke --list` and `invoke matrix --json` against `python -c pass`, one run.

Each command runs REPEATS times, interleaved so that machine load hits all three alike; the median of each is
printed with its excess over `python -c pass` (the interpreter's own start). Goals (issue 10): `invoke --list` at
most 0.25 s and `invoke matrix --json` at most 0.4 s more than `python -c pass`.

The commands run as a user runs them: with Python's bytecode cache (`__pycache__`, checked against each source's
mtime), which one untimed run of each writes first; PYTHONDONTWRITEBYTECODE is dropped from their environment, since
with it every rocmci module would be compiled from source on every start.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 15
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "invoke --list": [sys.executable, "-m", "invoke", "--list"],
    "invoke matrix --json": [sys.executable, "-m", "invoke", "matrix", "--json"],
}
GOALS_S = {"invoke --list": 0.25, "invoke matrix --json": 0.4}


ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
    return f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()}, load average {load}"


def main() -> None:
    print(f"machine: {machine()}")
    for argv in COMMANDS.values():  # writes the bytecode cache; not timed
        seconds(argv)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(REPEATS):
        for name, argv in COMMANDS.items():
            samples[name].append(seconds(argv))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["python -c pass"]
    print(f"{'command':<22} {'median s':>9} {'over python':>12} {'goal':>6}  verdict")
    for name, median in medians.items():
        over = median - base
        goal = GOALS_S.get(name)
        verdict = "" if goal is None else ("within" if over <= goal else "OVER")
        print(f"{name:<22} {median:9.3f} {over:12.3f} {'' if goal is None else f'{goal:.2f}':>6}  {verdict}")
    print(f"({REPEATS} runs each, interleaved; ratio invoke --list / python -c pass: {medians['invoke --list'] / base:.2f})")


if __name__ == "__main__":
    main()
