"""Where a benchmark writes its report: ``build/bench/`` by default, the tracked ``docs/reports/``
only when asked (``--write-docs``, what ``make bench WRITE_DOCS=1`` passes), or any folder (``--out``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.photos import REPO

DOCS = REPO / "docs" / "reports"  # generated reports, apart from the guides
BUILD = REPO / "build" / "bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--out", type=Path, default=None, help="where to write the report (default: build/bench/)"
    )
    where.add_argument(
        "--write-docs", action="store_true", help="update the tracked docs/reports/ files instead"
    )


def folder(args: argparse.Namespace) -> Path:
    """The folder ``args`` name (created)."""
    out = DOCS if args.write_docs else (args.out or BUILD)
    out.mkdir(parents=True, exist_ok=True)
    return out


def shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (what a reader can click on)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)
