"""`gateway` commands of the learning domain."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this domain's subcommands to the `gateway` parser."""
