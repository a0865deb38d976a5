"""The installed `rocmci` command, for people who only want a validated image: no clone, no matrix.yaml.

    rocmci pull --gpu mi355x --registry ghcr.io/acme/rocmci [--stack S] [--torch 2.13] [--aiter 0.1.20] [--lock deploy.lock.json]
    rocmci verify-lock deploy.lock.json [--registry ghcr.io/acme/rocmci]

The registry comes from --registry or ROCMCI_REGISTRY (a repository such as ghcr.io/acme/rocmci, or a host, which
then means <host>/rocmci). Heavy modules load only inside the command that runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

REGISTRY_ENV = "ROCMCI_REGISTRY"
DEFAULT_NAME = "rocmci"


class UsageError(Exception):
    pass


def repository_from(option: str | None, env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """--registry, else $ROCMCI_REGISTRY; a bare host means <host>/rocmci."""
    given = option or env.get(REGISTRY_ENV, "")
    if not given:
        raise UsageError(f"no registry: give --registry REPOSITORY (e.g. ghcr.io/acme/rocmci) or set {REGISTRY_ENV}")
    return given if "/" in given else f"{given}/{DEFAULT_NAME}"


def _pull(args: argparse.Namespace) -> int:
    from rocmci.plan import KNOWN_GPU_GFX
    from rocmci.pull import lock

    repository = repository_from(args.registry)
    lock_file = Path(args.lock) if args.lock else None
    # A known GPU model's gfx also lists its builds' content tags (gfx950-...), so a pin can find an older image.
    prefixes = (KNOWN_GPU_GFX[args.gpu],) if args.gpu in KNOWN_GPU_GFX else ()
    result, locked = lock.pull_and_lock(
        repository, args.gpu, torch=args.torch, aiter=args.aiter, lock_file=lock_file, stack=args.stack, build_prefixes=prefixes
    )
    if locked is not None:
        print(f"rocmci: lock written to {lock_file} (verdict pass, {locked.scope_words})", file=sys.stderr)
    print(result.reference)
    return 0


def _verify_lock(args: argparse.Namespace) -> int:
    from rocmci.pull import lock

    locked = lock.read_lock(Path(args.lock_file))
    repository = repository_from(args.registry) if args.registry else None
    checks = lock.verify_lock(locked, repository)
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"{check.name:<{width}}  {'ok' if check.ok else 'FAIL':<4}  {check.detail}")
    if all(c.ok for c in checks):
        print(f"\nlock holds: {locked.reference} passed on {locked.gpu} ({locked.scope_words})")
        return 0
    print(f"\nlock broken: {args.lock_file} no longer describes a validated image: do not deploy it", file=sys.stderr)
    return 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rocmci", description="Pull images that passed validation on your AMD GPU.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    registry_help = f"repository (ghcr.io/acme/rocmci) or host (then <host>/{DEFAULT_NAME}); default ${REGISTRY_ENV}"

    pull = commands.add_parser("pull", help="pull the newest image whose attached report passed on this GPU, by digest")
    pull.add_argument("--gpu", required=True, help="GPU target the report must have passed on, e.g. mi355x")
    pull.add_argument("--registry", help=registry_help)
    pull.add_argument("--stack", help="stack name of the matrix (e.g. rocm7.2-torch2.13): only images validated with it")
    pull.add_argument("--torch", help="torch version (prefix), e.g. 2.13")
    pull.add_argument("--aiter", help="aiter version (prefix), e.g. 0.1.20")
    pull.add_argument("--lock", metavar="FILE", help="write the digest, pins and report (verdict and scope) to FILE")
    pull.set_defaults(run=_pull)

    verify = commands.add_parser(
        "verify-lock", help="check that a lock file's image and passing report are still in the registry"
    )
    verify.add_argument("lock_file", metavar="FILE", help="a lock written by `rocmci pull --lock`")
    verify.add_argument("--registry", help="check this repository instead of the lock's (e.g. a mirror)")
    verify.set_defaults(run=_verify_lock)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from rocmci.errors import RocmciError

    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"rocmci {args.command}: {exc}", file=sys.stderr)
        return 2
    except RocmciError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
