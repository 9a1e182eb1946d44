"""What every `fvq-*` command shares: a user error prints `fvq-<cmd>: error: <what and how to fix>` and exits with
status 2 (argparse's convention for its own errors); `--debug` shows the traceback instead. Other exceptions are
bugs and keep their traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable

# Missing or unreadable files, folders and hub ids (OSError and its subclasses) and bad values (ValueError).
USER_ERRORS = (OSError, ValueError)


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None, command: Callable[[argparse.Namespace], object]):
    """Parse `argv` and run `command(args)`, turning user errors into `prog: error: ...` and exit status 2."""
    args = parser.parse_args(argv)
    try:
        return command(args)
    except USER_ERRORS as error:
        if getattr(args, "debug", False):
            raise
        parser.exit(2, f"{parser.prog}: error: {user_message(error)}\n")


def user_message(error: Exception) -> str:
    """The error's message; for one raised in a DataLoader worker (re-raised as "Caught ... in DataLoader worker
    process N. Original Traceback ..."), the original message alone."""
    message = str(error)
    if message.startswith("Caught ") and "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return message
