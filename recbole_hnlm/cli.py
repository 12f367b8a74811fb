"""What every command does on Ctrl-C: one line on stderr, saying what was kept and the command that resumes; exit 130.

Each command's ``main`` is decorated: ``@interruptible("python -m recbole_hnlm.llm", kept="...")``.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import shlex
import sys
from collections.abc import Callable

# The shell's exit status of a command ended by SIGINT (128 + 2).
INTERRUPTED = 130

Main = Callable[[list[str] | None], int]


def interrupted_line(command: str, argv: list[str], kept: str, rerun: str) -> str:
    """The Ctrl-C line: ``interrupted: <kept>; the same command <rerun>: <command line>``."""
    return f"interrupted: {kept}; the same command {rerun}: {shlex.join([*shlex.split(command), *argv])}"


def interruptible(command: str, kept: str, rerun: str = "resumes") -> Callable[[Main], Main]:
    """Make a command's ``main(argv)`` end a Ctrl-C with ``interrupted_line`` on stderr and exit status 130.

    ``command`` is how the user starts it (``python -m recbole_hnlm.llm``); ``kept`` says what the interrupted work
    left behind; ``rerun`` says what the same command line then does (``resumes``, ``starts it again``).
    """

    def decorate(main: Main) -> Main:
        @functools.wraps(main)
        def wrapper(argv: list[str] | None = None) -> int:
            arguments = sys.argv[1:] if argv is None else list(argv)
            try:
                return main(argv)
            except KeyboardInterrupt:
                print(interrupted_line(command, arguments, kept, rerun), file=sys.stderr, flush=True)
                return INTERRUPTED

        return wrapper

    return decorate


def with_option_hint(message: str, key: str, parser: argparse.ArgumentParser) -> str:
    """``message`` of an unknown setting ``key``, plus the command's own option it may have meant (``--out``)."""
    options = [option[2:] for action in parser._actions for option in action.option_strings if option.startswith("--")]
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
    return f"{message} (Or this command's own option --{close[0]}?)" if key and close else message
