"""``inspector`` command line: the parser of every command group (one module each), errors, and ``main``.

Importing this package is cheap: no torch, OpenCV, gRPC or matplotlib (a test checks it). Each command imports
what it needs when it runs, after checking the paths it was given, so ``--help``, a bad flag value or a wrong path
answers in a few hundredths of a second instead of after torch has loaded. Flag values are checked by argparse
(:mod:`inspector.cli.args`), so a bad one gets the usage line and exit 2 before any work starts.

Errors: a :class:`~inspector.errors.UserError` (bad path, flag, data set, bundle, frame, weights file, store) is
printed in one line and exits 2; so is an OS path error (missing file, not a folder, no permission) on a path given
on the command line, and an ``OSError`` that one of inspector's own checks raised with only a message. A service
that cannot be reached or refuses the call (:class:`~inspector.errors.ServiceError`) is one line too, and exits 1:
the command was right, the service failed it. Everything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from inspector.cli import audit, client, data, evaluate, export, importer, models, predict, review, serve, train
from inspector.errors import ServiceError, UserError

GROUPS = (data, importer, train, evaluate, export, predict, serve, models, audit, review, client)  # --help's order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspector", description="Industrial defect detection.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def user_message(err: BaseException, args: argparse.Namespace) -> str | None:
    """The one-line message of ``err`` when it is the user's to fix (see the module docstring), else None."""
    if isinstance(err, OSError) and not isinstance(err, UserError):
        named = (named_on_command_line(name, args) for name in (err.filename, err.filename2))
        if err.errno is not None and not any(named):
            return None  # the OS refused a path the user did not give: inspector's own bug
    elif not isinstance(err, UserError):
        return None
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def named_on_command_line(name: str | bytes | int | None, args: argparse.Namespace) -> bool:
    """Whether the file ``name`` is, or lies under, a path given on the command line (any string argument)."""
    if not isinstance(name, str):
        return False
    values = [v for value in vars(args).values() for v in (value if isinstance(value, list) else [value])]
    target = Path(name).absolute()
    return any(isinstance(v, str) and v and target.is_relative_to(Path(v).absolute()) for v in values)


class _Version(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("inspector")
        except PackageNotFoundError:  # run from a source tree that was never installed
            text = "unknown (not installed)"
        print(f"{parser.prog} {text}")  # on stdout, as argparse's own version action does
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit status (2: a user error, 1: the service failed the call; each printed in
    one line on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        args.func(args)
    except Exception as err:
        message = user_message(err, args)
        if message is None:
            raise
        print(f"inspector {args.command}: error: {message}", file=sys.stderr)
        return 1 if isinstance(err, ServiceError) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
