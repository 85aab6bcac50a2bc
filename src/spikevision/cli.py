"""``spikevision <command>``: the command-line entry point (also ``python -m spikevision``).

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only maps names to those modules, so adding a
command is one line in :data:`COMMANDS`. Exit statuses, the same for every command
(:mod:`spikevision.commands`): 0 done, 1 the request cannot be carried out (a missing
or damaged file, data, a model an export target cannot express, a failed run), 2 an
invalid request (command line, recipe or study), 128 + N stopped by signal N.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "version": ("spikevision.commands.version", "print the spikevision, torch and Python versions"),
    "smoke": ("spikevision.commands.smoke", "build a small spiking network and push a batch through it"),
    "models": ("spikevision.commands.models", "list the model zoo: name, family, paper, T, input, parameters"),
    "recipes": ("spikevision.commands.recipes", "list the recipes shipped with spikevision (spikevision train NAME)"),
    "train": ("spikevision.commands.train", "train a model from a YAML recipe (key=value overrides, --resume)"),
    "eval": ("spikevision.commands.eval", "evaluate a run directory or checkpoint on its test set"),
    "predict": ("spikevision.commands.predict", "classify image files with shipped weights or a trained run"),
    "profile": ("spikevision.commands.profile", "per-layer firing rates, ACs/MACs and energy of a model or run"),
    "report": ("spikevision.commands.report", "write RUN_DIR/report.md: curves, firing rates, ops/energy, figures"),
    "deploy": ("spikevision.commands.deploy", "integer multiplication-free model, MFI audit and float agreement"),
    "export": ("spikevision.commands.export", "export a model: NIR, ONNX, safetensors, pretrained weights + card, or C"),
    "study": ("spikevision.commands.study", "train every arm x seed of a study (resumable) and write its page"),
}


EPILOG = ("exit status: 0 done; 1 the request cannot be carried out (missing or damaged file, data, a model the "
          "export target cannot express, a failed run); 2 invalid request (command line, recipe or study); "
          "128+N stopped by signal N")


def build_parser() -> argparse.ArgumentParser:
    from spikevision import __version__

    parser = argparse.ArgumentParser(
        prog="spikevision",
        description="Train, measure and deploy deep spiking neural networks for vision.",
        epilog=EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"spikevision {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


class CommandStopped(BaseException):
    """SIGTERM arrived during a command (SIGINT arrives as :class:`KeyboardInterrupt`); ``signum`` is the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_HANDLER_PID = os.getpid()


def _raise_stopped(signum: int, frame: object) -> None:
    if os.getpid() != _HANDLER_PID:  # a forked child (a DataLoader worker) inherited it: die as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise CommandStopped(signum)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM raises like SIGINT, so every command ends in the one-line report below with 128 + N (train and study
    # install their own handlers while training: they save a checkpoint first, then report the same way)
    global _HANDLER_PID
    main_thread = threading.current_thread() is threading.main_thread()
    _HANDLER_PID = os.getpid()
    previous = signal.signal(signal.SIGTERM, _raise_stopped) if main_thread else None
    try:
        return _main(argv)
    except (KeyboardInterrupt, CommandStopped) as e:
        signum = e.signum if isinstance(e, CommandStopped) else signal.SIGINT
        name = next((a for a in (sys.argv[1:] if argv is None else argv) if a in COMMANDS), None)
        print(f"spikevision{' ' + name if name else ''}: stopped by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    finally:
        if main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except BrokenPipeError:  # output piped into a reader that stopped early (`spikevision models | head`)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not raise again
        return 0


if __name__ == "__main__":
    sys.exit(main())
