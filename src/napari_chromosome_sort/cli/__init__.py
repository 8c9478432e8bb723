"""The ``chromosort`` console script.

Each sub-command lives in a module ``cli/<name>.py`` exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; a module holding two related commands
exposes each as a namespace of those three (``"module:NAME"`` in :data:`COMMANDS`). Those
modules import heavy libraries (torch, skimage...) inside ``run`` only, so ``chromosort --help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from napari_chromosome_sort import __version__
from napari_chromosome_sort.errors import ChromosortError

# command name -> module name in this package (":NAME": the command is that module's NAME)
COMMANDS = {
    "segment": "segment",
    "segment-learn": "segment_learn",
    "train": "train",
    "predict": "predict",
    "evaluate": "evaluate",
    "crossval": "evaluate:CROSSVAL",
    "import-model": "imports:IMPORT_MODEL",
    "import-labels": "imports:IMPORT_LABELS",
    "batch": "batch",
    "readout": "readout",
    "sort": "sort",
    "demo": "demo",
}


def _available_commands() -> dict[str, object]:
    modules = {}
    for command, target in COMMANDS.items():
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{module_name}":
                raise
            continue
        modules[command] = getattr(module, attribute) if attribute else module
    return modules


def build_parser() -> argparse.ArgumentParser:
    """The ``chromosort`` argument parser: one sub-command per module of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="chromosort",
        description="Segment metaphase spreads, classify chromosome cohesion types, explain calls.",
    )

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command, module in _available_commands().items():
        sub_parser = sub.add_parser(command, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run, _inputs=_list_positional(sub_parser))
    return parser


def _list_positional(parser: argparse.ArgumentParser) -> str | None:
    """The name of ``parser``'s positional that takes several values (e.g. ``images``)."""
    for action in parser._actions:
        if not action.option_strings and action.nargs in ("+", "*"):
            return action.dest
    return None


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line parsed; input files given after options as well as before
    (``chromosort predict MODEL --spreads --out c.csv SPREADS/*.png``) all count as inputs,
    which argparse alone refuses as "unrecognized arguments"."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    inputs = getattr(args, "_inputs", None)
    if extra and inputs and not any(item.startswith("-") for item in extra):
        getattr(args, inputs).extend(extra)
        return args
    if extra:  # an unknown option: argparse's own message
        parser.parse_args(argv)
    return args


def _one_line(error: BaseException) -> str:
    """An OS error as one line (its text is the OS's, e.g. ``[Errno 28] No space left...``)."""
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn user errors into one line on stderr + exit code 2
    (operating-system errors such as a full disk: exit code 1)."""
    args = parse_arguments(argv)
    try:
        return int(args._run(args) or 0)
    except ChromosortError as error:
        print(f"chromosort {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # disk full, no permission, a folder where a file should be...
        print(f"chromosort {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"chromosort {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except RecursionError:  # a file nested deeper than any real one (crafted JSON, ...)
        print(f"chromosort {args.command}: error: an input is nested too deeply", file=sys.stderr)
        return 2
    except ValueError as error:
        if "integer string conversion" not in str(error):
            raise
        # a number of thousands of digits in a JSON or CSV input
        print(f"chromosort {args.command}: error: an input holds a number too long to read",
              file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        print(f"chromosort {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
