"""Two kinds of failure, never mixed: the user's input is wrong, or rfbench has a bug.

A problem with what the user gave (an argument, a flag, a spec key, a dataset, a checkpoint, a
record file) is an :class:`InputError`, raised by validation with one line that names the problem
and the valid choices. The Python API raises it as it is: every kind is also a ``ValueError`` or
``TypeError``, so ``except ValueError`` keeps working. The command lines print it as
``error: <message>`` and exit with status 2.

Anything else is a bug. :func:`run_cli` never shows it as bad input: the full traceback goes to
stderr, followed by one line saying it is an internal error, and the exit status is 1. No
command catches ``ValueError`` or ``KeyError`` around a whole run.

Input a run can work around (an image id listed twice, train and val sharing images) is an
:class:`InputWarning`: the command lines print it as ``warning: <message>`` and go on.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Callable


class InputError(Exception):
    """The user's input or data is wrong: one line, exit status 2 from the command lines."""


class UsageError(InputError, ValueError):
    """A bad value of an argument, a flag or a spec key."""


class UsageTypeError(InputError, TypeError):
    """An argument or spec value of the wrong kind (a string where a list belongs, a float for an int)."""


class DataError(InputError, ValueError):
    """A problem in the user's files: a dataset, a checkpoint, a spec or a record file."""


class MissingFileError(DataError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class InputWarning(UserWarning):
    """Input a run works around but the user should know of: one ``warning:`` line from the command lines."""


EXIT_INPUT = 2
EXIT_BUG = 1


def checked(fn: Callable, *args, **kwargs):
    """Run a validation. Validation raises :class:`~bench.errors.InputError` (one line, exit 2) itself;
    a plain ValueError/TypeError from a check is taken as the same kind of refusal. Only for checks:
    never wrap a measurement in it (a bug there must keep its traceback)."""
    try:
        return fn(*args, **kwargs)
    except InputError:
        raise
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def run_cli(main: Callable[[], int], prog: str) -> int:
    """Run a command's body: an InputError is one line and exit 2; a bug keeps its traceback, exit 1; an
    InputWarning is one line and the run goes on. SIGTERM is taken as an interrupt (Ctrl-C): the same path stops every
    worker and job the command started, and the exit status is 143 (128 + SIGTERM)."""
    import signal

    terminated = {"by": None}

    def on_term(signum, frame):
        terminated["by"] = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
    try:
        with warnings.catch_warnings():
            shown = warnings.showwarning

            def one_line(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, InputWarning):
                    print(f"warning: {message}", file=sys.stderr)
                else:  # other libraries' warnings as Python shows them
                    shown(message, category, filename, lineno, file, line)

            warnings.showwarning = one_line
            return main()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: {'terminated' if terminated['by'] else 'interrupted'}", file=sys.stderr)
        return 143 if terminated["by"] else 130
    except BrokenPipeError:  # the reader went away (`... --json | head`): not a bug, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail again
        return 128 + 13  # as a shell reports SIGPIPE
    except Exception as err:  # a bug: never printed as the user's mistake
        traceback.print_exc()
        print(f"{prog}: internal error ({type(err).__name__}): this is a bug in rfbench, not a problem with "
              "your input; the traceback above says where", file=sys.stderr)
        return EXIT_BUG
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
