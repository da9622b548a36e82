"""The `limner` command: a thin layer that turns domain errors into one-line messages.

    limner data shapes --out DIR --resolution 32
    limner data emoji --out DIR --resolution 64
    limner data emoji-styles --out DIR --resolution 64
    limner train --preset shapes [--model gan|vae|evaluator|captioner|aligner] [--max-train-steps N] ...
    limner generate MODEL_DIR "a small red circle in the top left" -n 8 -o grid.png
    limner caption MODEL_DIR a.png b.png [--beams 3]
    limner serve [NAME=]MODEL_DIR ... [--host H --port P --api-keys FILE]
    limner export MODEL_DIR --format onnx [--quantize dynamic|static]
    limner prune MODEL_DIR --amount 0.3 --output-dir DIR [--distill-minutes 5]
    limner keys create|revoke|list --file FILE [NAME]

One module per group of subcommands (data, train, inference, deploy), each with its parsers and the
functions that run them; a LimnerError from any of them becomes one line and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from limner.cli import data, deploy, inference, train
from limner.cli.common import BACKEND_CHOICES, EXIT_USER_ERROR
from limner.errors import LimnerError

__all__ = ["BACKEND_CHOICES", "EXIT_USER_ERROR", "build_parser", "main"]

_GROUPS = (data, train, inference, deploy)
_COMMANDS = {name: run for group in _GROUPS for name, run in group.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="limner", description="Words into pictures: text-to-image GANs on a pretrained language model.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in _GROUPS:
        group.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except LimnerError as err:
        if args.verbose:
            raise
        print(f"limner: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
