"""Shared start-up for the stage scripts in ``stages/``: argument parsing, params, threads, seeds, logging.

Every stage begins the same way, so the sequence lives here once: parse ``--params``, validate the whole
``params.yaml`` (so a bad key fails before any work), pin thread counts and seed every RNG.
A :class:`~retrofit.config.ParamsError` or other expected error becomes a one-line message and exit code 2
instead of a stack trace from deep inside a library.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from retrofit.config import Params, ParamsError, load_params
from retrofit.runtime import seed_everything, set_threads


def parser(description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the ``--params`` option every stage takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument(
        "--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
        help="override params before validation, e.g. --set train.mix.per_language=8 negatives.hard=false",
    )
    return p


def init_stage(args: argparse.Namespace) -> Params:
    """Load and validate params, configure logging, pin threads and seed everything.

    Args:
        args: Parsed arguments with a ``params`` attribute.

    Returns:
        The validated params.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = load_params(args.params, getattr(args, "overrides", None))
    set_threads(params.base.threads)
    seed_everything(params.base.seed)
    return params


def run(main: Callable[[], None], expected: tuple[type[BaseException], ...] = ()) -> None:
    """Run a stage's ``main``; print expected errors as one clear line and exit 2.

    Args:
        main: The stage body.
        expected: Extra exception types whose message is already user-facing.
    """
    try:
        main()
    except (ParamsError, *expected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
