"""Torch-free device runtime: bundles, preprocessing, backends, detector scoring, the ``Pipeline``.

The core is the modules at this level with ``backends/`` and ``detectors/``; the rooms below are
built on it and the core imports none of them:

* ``data/``: datasets, metrics and bundle evaluation shared with training (a frame decodes the
  same in training and on the device);
* ``streams/``: sources, prefetch, the one scoring loop, sinks, health, bench;
* ``ros/``: ROS image messages and bags without a ROS install;
* ``medical/``: DICOM, studies, operating points, triage, worklist, report, audit log;
* ``commands/``: the command-line glue of ``run``, ``replay``, ``triage`` and ``operating-point``.

Nothing here imports torch or another edgessl stage. The public API is re-exported lazily
(PEP 562), so ``import edgessl.edge_runtime.errors`` stays as cheap as the module itself.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Pipeline": "pipeline", "Result": "pipeline", "Bundle": "bundle", "EdgesslError": "errors",
    "open_source": "streams.sources", "run_source": "streams.runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
