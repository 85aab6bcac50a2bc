"""One module per CLI command: ``add_arguments(parser)`` and ``run(args) -> int``.

Shared here: :func:`user_errors`, the one way a command reports a bad file or
argument (a missing run directory, a damaged checkpoint, absent data).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ["user_errors"]


@contextlib.contextmanager
def user_errors(command: str, context: str = "") -> Iterator[None]:
    """Report ``FileNotFoundError``/``ValueError`` raised inside as one line and exit status 1, no traceback.

    The line is ``spikevision <command>: [<context>: ]<message>`` on stderr
    (``SystemExit`` with that message). Wrap only the steps that read user
    input (paths, files, data), so that programming errors keep their traceback.

    Example::

        with user_errors("eval"):
            run = load_run(args.target, args.checkpoint)
    """
    try:
        yield
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"spikevision {command}: {context + ': ' if context else ''}{e}") from None
