"""The ``edgessl`` command line (torch-free): one package, outside the stages it drives. Nothing
but the CLI imports it."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
