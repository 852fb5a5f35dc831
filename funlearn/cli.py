"""The ``funlearn`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from funlearn._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="funlearn", description="Machine unlearning for PyTorch.")
    parser.add_argument("--version", action="version", version=f"funlearn {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0
