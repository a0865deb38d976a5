"""How long the CLI takes to start: `invoke --list` and `invoke matrix --json` against `python -c pass`, one run.

Each command runs REPEATS times, interleaved so that machine load hits all three alike; the median of each is
printed with its excess over `python -c pass` (the interpreter's own start). Goals (issue 10): `invoke --list` at
most 0.25 s and `invoke matrix --json` at most 0.4 s more than `python -c pass`.

Beside the median wall-clock time: the fastest run (the one least slowed by other work) and the median CPU seconds
(user + system of the command). On a shared, loaded machine the wall clock also counts the time spent waiting for a
core, which the CPU figure does not.

The commands run as a user runs them: with Python's bytecode cache (`__pycache__`, checked against each source's
mtime), which one untimed run of each writes first; PYTHONDONTWRITEBYTECODE is dropped from their environment, since
with it every rocmci module would be compiled from source on every start.
"""

from __future__ import annotations

import os
import platform
import resource
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


def seconds(argv: list[str]) -> tuple[float, float]:
    """Wall-clock seconds and the CPU seconds (user + system) the command itself used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(REPEATS):
        for name, argv in COMMANDS.items():
            wall, cpu = seconds(argv)
            walls[name].append(wall)
            cpus[name].append(cpu)
    print(
        f"{'command':<22} {'median s':>9} {'over python':>12} {'min s':>6} {'over':>6} {'cpu s':>6} {'over':>6} {'goal':>5}  verdict"
    )
    medians = {name: statistics.median(values) for name, values in walls.items()}
    minimums = {name: min(values) for name, values in walls.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpus.items()}
    base = "python -c pass"
    for name in COMMANDS:
        overs = (medians[name] - medians[base], minimums[name] - minimums[base], cpu_medians[name] - cpu_medians[base])
        goal = GOALS_S.get(name)
        verdict = "" if goal is None else " / ".join("within" if over <= goal else "OVER" for over in overs)
        print(
            f"{name:<22} {medians[name]:9.3f} {overs[0]:12.3f} {minimums[name]:6.3f} {overs[1]:6.3f} "
            f"{cpu_medians[name]:6.3f} {overs[2]:6.3f} {'' if goal is None else f'{goal:.2f}':>5}  {verdict}"
        )
    print("verdict: median wall / fastest wall / median CPU, each over python -c pass's own")
    ratio = medians["invoke --list"] / medians[base]
    print(f"({REPEATS} runs each, interleaved; ratio of medians invoke --list / python -c pass: {ratio:.2f})")


if __name__ == "__main__":
    main()
