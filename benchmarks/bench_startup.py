"""How long the CLI takes to start: `invoke --list` and `invoke matrix --json` against `python -c pass`, one run.

Each command runs REPEATS times, interleaved so that machine load hits all three alike; the median of each is
printed with its excess over `python -c pass` (the interpreter's own start). Goals (issue 10): `invoke --list` at
most 0.25 s and `invoke matrix --json` at most 0.4 s more than `python -c pass`.
"""

from __future__ import annotations

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


def seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
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
