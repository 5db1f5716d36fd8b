"""What the read-only Mac commands (new, status, stats, export) share.

Finding the studio from any folder of a clone, reading the ledger without
letting one bad line hide every verdict, and printing a table: a rich table
on a terminal, plain aligned text in a pipe or a log.
"""
from __future__ import annotations

import sys
from typing import Sequence, TextIO

from studio.errors import InvalidFile
from studio.layout import Studio
from studio.ledger import LedgerLine, parse

from mac_side.ledger import valid_lines

Row = Sequence[object]


def read_ledger(studio: Studio) -> list[LedgerLine]:
    """Every verdict in ``ledger.jsonl``; bad lines are reported on stderr and left out."""
    try:
        raw = studio.ledger_path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        return parse(raw)
    except InvalidFile as exc:
        first = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        print(f"renderloop: warning: {first}{more}; such lines are left out", file=sys.stderr)
        return valid_lines(raw)


def print_table(
    title: str, headers: Sequence[str], rows: Sequence[Row], *, numeric_from: int = 1, out: TextIO | None = None
) -> None:
    """A table: rich on a terminal, plain aligned text otherwise (columns from ``numeric_from`` right-aligned)."""
    stream = out or sys.stdout
    if stream.isatty():
        _rich_table(title, headers, rows, numeric_from, stream)
        return
    for line in plain_table(title, headers, rows, numeric_from=numeric_from):
        print(line, file=stream)


def plain_table(title: str, headers: Sequence[str], rows: Sequence[Row], *, numeric_from: int = 1) -> list[str]:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(headers))]
    lines = [title] if title else []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if i >= numeric_from else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def _rich_table(title: str, headers: Sequence[str], rows: Sequence[Row], numeric_from: int, stream: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(str(header), justify="right" if i >= numeric_from else "left")
    for row in rows:
        table.add_row(*("" if c is None else str(c) for c in row))
    Console(file=stream).print(table)
