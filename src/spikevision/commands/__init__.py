"""One module per CLI command: ``add_arguments(parser)`` and ``run(args) -> int``.

Shared here: how a command reports a problem, so that every command does it the
same way, in one line ``spikevision <command>: <what was wrong and what to do>``
on stderr, never a traceback, with one exit-status scheme:

==========================  ==================================================================
exit status                 meaning
==========================  ==================================================================
0                           done
1 (:data:`EXIT_FAILURE`)    the request is well formed but cannot be carried out: a missing
                            path or unknown name (run directory, checkpoint, recipe, model,
                            data files), a damaged or foreign file, weights that do not fit
                            the model's arguments, an output that cannot be written, a model
                            the export target cannot express, a run that fails (non-finite
                            loss, run directory already in use)
2 (:data:`EXIT_USAGE`)      the request itself is invalid, found before any work starts:
                            argparse's errors (unknown option, missing or malformed value,
                            a value out of range such as ``--limit 0`` or ``--model-kwargs``
                            that is not a JSON object), an option another one needs, and a
                            recipe or study that fails validation (``ConfigError``)
128 + N                     stopped by signal N (``train``, ``study``; state saved)
==========================  ==================================================================

Helpers: :func:`user_errors` (wrap the steps that read user input; raises, status 1),
:func:`report_error` (for commands that return their status), :func:`check_writable`
(before the work, so that no result is lost), :func:`progress` (long loops report on
stderr), and argparse value types (:func:`json_object`, :func:`positive_int`,
:class:`DeprecatedAlias`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "user_errors", "fail", "report_error", "check_writable", "progress",
           "PROGRESS_EVERY_S", "json_object", "positive_int", "DeprecatedAlias"]

log = logging.getLogger(__name__)

EXIT_FAILURE = 1  # well-formed request that cannot be carried out (bad file, data, model; failed run)
EXIT_USAGE = 2  # invalid request (argparse errors, invalid option values, invalid recipe or study)


def _error_line(command: str, message: str, one_line: bool = True) -> str:
    """``spikevision <command>: <message>``, on one line if asked (white space folded)."""
    message = " ".join(message.split()) if one_line else message.strip()
    return f"spikevision {command}: {message}"


def fail(command: str, message: str) -> SystemExit:
    """The one-line error as an exception to raise: ``raise fail("profile", "...")`` (exit status 1)."""
    return SystemExit(_error_line(command, message))


@contextlib.contextmanager
def user_errors(command: str, context: str = "") -> Iterator[None]:
    """Report ``OSError`` (a missing, unreadable or unwritable path) and ``ValueError`` raised inside as one line.

    The line is ``spikevision <command>: [<context>: ]<message>`` (``SystemExit`` with that
    message: printed on stderr, exit status :data:`EXIT_FAILURE`, no traceback). Wrap only the steps
    that read user input or write results (paths, files, data), so that programming errors keep
    their traceback.

    Example::

        with user_errors("eval"):
            run = load_run(args.target, args.checkpoint)
    """
    try:
        yield
    except (OSError, ValueError) as e:
        raise fail(command, f"{context + ': ' if context else ''}{e}") from None


def report_error(command: str, message: str, status: int = EXIT_FAILURE) -> int:
    """Log ``spikevision <command>: <message>`` as an error and return ``status``, for ``return report_error(...)``.

    For commands that return their exit status rather than raise (``train``, ``study``,
    ``export``); a multi-line message (a ``ConfigError`` listing every problem) keeps its lines.
    """
    log.error(_error_line(command, message, one_line=False))
    return status


def check_writable(command: str, path: str | Path) -> None:
    """Stop with the one-line error unless the file ``path`` can be written; call it before the work.

    The nearest existing folder on the way to ``path`` must accept a new file (checked by
    creating and removing an anonymous temporary file there: permissions, read-only file
    systems, a regular file in the way), and ``path`` must not be a folder. Nothing is left behind.

    Raises:
        SystemExit: the one-line error (exit status :data:`EXIT_FAILURE`).
    """
    path = Path(path)
    folder = next(p for p in path.absolute().parents if p.exists())
    if path.is_dir():
        reason = "it is a folder"
    elif not folder.is_dir():
        reason = f"{folder} is a file, not a folder"
    else:
        try:
            with tempfile.TemporaryFile(dir=folder):
                return
        except OSError as e:
            reason = f"{folder}: {e.strerror or e}"
    raise fail(command, f"cannot write {path} ({reason}); choose a writable output folder (nothing was done)")


PROGRESS_EVERY_S = 30.0  # seconds between plain progress lines (eval, deploy) when stderr is not a terminal


def progress(items: Iterable, total: int, desc: str) -> Iterable:
    """``items`` with progress on stderr: a tqdm bar on a terminal, else training's plain lines.

    Without a terminal (a log file) a line every :data:`PROGRESS_EVERY_S` seconds, as
    ``spikevision train`` writes them (:func:`spikevision.train.engine.progress_lines`)::

        eval: 120/400 batches (30%), 9.80 batches/s, about 29s left
    """
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(items, total=total, desc=desc, leave=False, dynamic_ncols=True)
    from spikevision.train.engine import progress_lines

    return progress_lines(items, total, desc, PROGRESS_EVERY_S)


def json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object (``'{"T": 4}'``), else argparse's usage error (exit status 2)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}); write an object such as '{{\"T\": 4}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"T\": 4}}', got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, else argparse's usage error (exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option, kept for one release: it acts as ``target`` and prints a warning.

    Example::

        new = parser.add_argument("--dataset", default=None)
        parser.add_argument("--data", action=DeprecatedAlias, target=new)
    """

    def __init__(self, option_strings: list[str], dest: str, target: argparse.Action, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=target.dest, nargs=target.nargs, default=argparse.SUPPRESS,
                         metavar=target.metavar, help=f"deprecated spelling of {target.option_strings[0]}")
        self.target = target

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated and will be removed in the next release; "
              f"use {self.target.option_strings[0]}", file=sys.stderr)
        self.target(parser, namespace, values, option_string)
