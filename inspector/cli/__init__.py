"""The ``inspector`` command line: one module per command group, each parsing its flags and calling the library."""

from inspector.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
