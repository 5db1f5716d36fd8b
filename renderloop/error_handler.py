"""How failures reach the user: one clear line, tracebacks only with --debug.

Expected failures (:class:`FatalError`) print one line and exit 1; a file
with problems prints ``path:line: message`` per problem; Ctrl+C exits 130;
anything else is a bug: one line pointing at ``--debug`` and exit 3.
"""
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Iterator

from studio.errors import FatalError, InvalidFile


class Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@contextlib.contextmanager
def error_handler(debug: bool) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        print("renderloop: interrupted", file=sys.stderr)
        raise Exit(130) from None
    except BrokenPipeError:
        raise  # the reader of our output left: not an error (see leave_quietly_on_broken_pipe)
    except InvalidFile as exc:
        if debug:
            traceback.print_exc()
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise Exit(1) from None
    except FatalError as exc:
        if debug:
            traceback.print_exc()
        print(f"renderloop: error: {exc}", file=sys.stderr)
        raise Exit(1) from None
    except Exception as exc:
        if debug:
            traceback.print_exc()
            print(f"renderloop: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        else:
            print(
                f"renderloop: unexpected error: {type(exc).__name__}: {exc} "
                "(run again with --debug for the traceback, and please report it)",
                file=sys.stderr,
            )
        raise Exit(3) from None


SIGPIPE_EXIT = 141  # what a shell reports for a program ended by SIGPIPE, as `git log | head -1`


@contextlib.contextmanager
def leave_quietly_on_broken_pipe() -> Iterator[None]:
    """When the reader of stdout leaves (``renderloop status | head -1``), leave quietly, as git does."""
    try:
        yield
    except BrokenPipeError:
        # Python would report the failed flush of stdout at exit: point stdout at nothing first
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(SIGPIPE_EXIT) from None
