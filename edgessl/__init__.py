"""edgessl: unlabeled images to an INT8 anomaly detector running on the edge.

The stages live under one namespace: ``edgessl.train`` (torch), ``edgessl.export``,
``edgessl.calibration`` and the torch-free device runtime ``edgessl.edge_runtime``.
"""

__version__ = "0.1.0"
