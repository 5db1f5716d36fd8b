"""What the commands share for output: tables, and the warnings libraries log.

A table is a rich table on a terminal, plain aligned text in a pipe or a
log.  Libraries never print: what they have to warn about goes to the
``renderloop`` logger, shown here as ``renderloop: warning: ...`` lines.
"""
from __future__ import annotations

import logging
import sys
from typing import Sequence, TextIO

Row = Sequence[object]


class _Lines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "warning" if record.levelno < logging.ERROR else "error"
        return f"renderloop: {level}: {record.getMessage()}"


def show_warnings() -> None:
    """Show what libraries log at WARNING and above on stderr, one ``renderloop: warning:`` line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lines())
    handler.setLevel(logging.WARNING)
    install_handler(handler, logging.WARNING)


def install_handler(handler: logging.Handler, level: int) -> None:
    """Make ``handler`` the one handler of the ``renderloop`` loggers."""
    root = logging.getLogger("renderloop")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


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
