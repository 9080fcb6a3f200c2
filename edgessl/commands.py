"""CLI registration of the commands that span stages: ``bench`` and ``demo`` (kept out of
``edge_runtime``, which imports no other stage)."""

from __future__ import annotations

import argparse

from . import bench_command, demo


def register(sub) -> dict[str, argparse.ArgumentParser]:
    return {**bench_command.register(sub), **demo.register(sub)}
