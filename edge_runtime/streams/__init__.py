"""Image sources, prefetch, the one scoring loop (``ScoredStream``), sinks, stream health and the
latency bench: everything that moves frames through a ``Pipeline``."""
