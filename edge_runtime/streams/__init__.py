"""Image sources, prefetch, the one scoring loop (``ScoredStream``), sinks, stream health, the
latency bench and adaptation (``adapt``): everything that moves frames through a ``Pipeline``."""
