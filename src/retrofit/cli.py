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

from retrofit.config import Params, load_params
from retrofit.errors import RetrofitError
from retrofit.runtime import resolve_runtime, seed_everything


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
    return resolved(load_params(args.params, getattr(args, "overrides", None)))


def resolved(params: Params) -> Params:
    """Pin threads, seed everything, and replace every ``auto`` runtime param by this machine's choice.

    ``base.threads``, ``base.bf16_inference`` and ``train.bf16`` may be ``auto`` (the params default):
    :func:`retrofit.runtime.resolve_runtime` picks the free cores and bf16 only where the device computes it
    natively, logs the choice and keeps it for the stage's run record (``runtime_choices``).

    Returns:
        ``params`` with those three fields concrete (an int and two bools).
    """
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    choice = resolve_runtime(
        params.base.threads, {"bf16_inference": params.base.bf16_inference, "train_bf16": params.train.bf16}, device,
        params.base.fp32_linear,
    )
    seed_everything(params.base.seed)
    logging.getLogger(__name__).info(
        "runtime: %d thread(s) of %d usable core(s); bf16 %s for inference, %s for training (%s); fp32 linear: %s",
        choice["threads"], choice["cores"], "on" if choice["bf16_inference"] else "off",
        "on" if choice["train_bf16"] else "off", choice["bf16_reason"], choice["fp32_linear"],
    )
    return params.model_copy(update={
        "base": params.base.model_copy(update={"threads": choice["threads"],
                                               "bf16_inference": choice["bf16_inference"]}),
        "train": params.train.model_copy(update={"bf16": choice["train_bf16"]}),
    })


def run(main: Callable[[], None]) -> None:
    """Run a stage's ``main``: bad input exits 2 with one line, a bug keeps its traceback.

    A :class:`~retrofit.errors.RetrofitError` (bad params, a missing or malformed file, a missing model, an
    unreachable endpoint: see :mod:`retrofit.errors`) is something the user can fix, and its message says how, so it
    is printed as one ``error: ...`` line. Any other exception is a bug and propagates with its full traceback.

    Args:
        main: The stage body.
    """
    try:
        main()
    except RetrofitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
