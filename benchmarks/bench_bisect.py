"""Bisect vs plain builds: wall time and validations for the test series (tests/fixtures/aiter_series.py).

Both sides start from the same warm layer cache (the stack's current entry, aiter 0.1.10, built first) and each
side has its own pypiserver (another port, so another AITER_INDEX_URL build arg): neither reuses the other's aiter
layers. Side A: `run_bisect` over 0.1.10..0.1.14. Side B: the pins side A validated, each built and validated the
plain way (`build_entries` + `validate_entries` + `verdict_for`, as `invoke build/validate/report` do), one after
another; side C: every candidate of the range the plain way (a linear scan, what one does without bisect).

    PYTHONPATH=. python benchmarks/bench_bisect.py [--wheelhouse .cache/wheelhouse] [--linear]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
sys.path.insert(0, str(ROOT / "tests"))

import aiter_series  # noqa: E402
from test_bisect import private_base, write_matrix  # noqa: E402

from rocmci import bisect  # noqa: E402
from rocmci.build import BuildOptions, build_entries  # noqa: E402
from rocmci.engine import docker_client  # noqa: E402
from rocmci.plan import load_plan  # noqa: E402
from rocmci.report import verdict_for  # noqa: E402
from rocmci.validate import RunOptions, validate_entries  # noqa: E402

GOOD, BAD = "0.1.10", "0.1.14"
# One build file-server port for every build here: it is a build arg of the first RUN, so both sides share layers.
PORT = aiter_series.free_port()


def plain(
    pins: list[str], index_url: str, repository: str, wheelhouse: Path, work: Path, base: str
) -> tuple[float, dict[str, str]]:
    started = time.monotonic()
    verdicts = {}
    for pin in pins:
        matrix = write_matrix(work / f"matrix-{pin}.yaml", repository, index_url, pin=pin, base=base)
        plan = load_plan(matrix)
        options = BuildOptions.resolve(
            repository, wheelhouse=wheelhouse, log_dir=work / "plain-logs", check_registry=False, fileserver_port=PORT
        )
        [built] = build_entries(plan, list(plan.entries), options)
        assert built.status != "failed", built.detail
        validate_entries(plan, list(plan.entries), RunOptions(repository, work / "plain-reports"))
        [entry] = plan.entries
        verdicts[pin] = verdict_for(work / "plain-reports" / entry.id, entry.summary()).verdict
    return time.monotonic() - started, verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheelhouse", type=Path, default=ROOT / ".cache" / "wheelhouse")
    parser.add_argument("--linear", action="store_true", help="also build and validate every candidate (side C)")
    args = parser.parse_args()
    repository = f"127.0.0.1:5000/rocmci-bench-bisect-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="rocmci-bench-bisect-") as tmp:
        work = Path(tmp)
        aiter_series.write_series(work / "packages")
        index_a = aiter_series.start_index(work / "packages")
        index_b = aiter_series.start_index(work / "packages")
        client = docker_client()
        base = private_base(client, f"bench-{uuid.uuid4().hex[:8]}")
        try:
            warm = load_plan(write_matrix(work / "warm.yaml", repository, index_a.url, pin=GOOD, base=base))
            options = BuildOptions.resolve(
                repository, wheelhouse=args.wheelhouse, log_dir=work / "warm-logs", check_registry=False, fileserver_port=PORT
            )
            build_entries(warm, list(warm.entries), options)

            request = bisect.BisectRequest("local", "series", "aiter", GOOD, BAD, reports_dir=work / "reports")
            started = time.monotonic()
            result = bisect.run_bisect(warm, request, options)
            bisect_s = time.monotonic() - started
            pins = [view.pin for view in result.steps]
            plain_s, verdicts = plain(pins, index_b.url, repository, args.wheelhouse, work, base)
            print(bisect.summary_table(result))
            print(f"\nbisect {GOOD}..{BAD}: first bad {result.first_bad}, {result.validations} validations, {bisect_s:.0f}s")
            print(f"plain build+validate of the same {len(pins)} pins one after another: {plain_s:.0f}s ({verdicts})")
            print(f"ratio bisect/plain wall time: {bisect_s / plain_s:.2f}")
            if args.linear:
                index_c = aiter_series.start_index(work / "packages")
                try:
                    linear_s, linear = plain(result.candidates, index_c.url, repository, args.wheelhouse, work, base)
                finally:
                    index_c.stop()
                print(f"linear scan, all {len(result.candidates)} candidates: {linear_s:.0f}s ({linear})")
                print(f"ratio bisect/linear wall time: {bisect_s / linear_s:.2f}")
        finally:
            index_a.stop()
            index_b.stop()
            for image in client.images.list(name=repository):
                for tag in image.tags:
                    client.images.remove(tag)
            client.images.remove(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
