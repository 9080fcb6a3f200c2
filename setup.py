"""Package discovery for the card's layout, which pyproject.toml alone cannot express: each top-level
folder is one import package under a prefix (``train/`` is ``edgessl.train``), and every package
below it is found, not listed. Everything else about the distribution is in pyproject.toml."""

from setuptools import find_packages, setup

FOLDERS = {
    "edgessl": "edgessl",
    "edgessl.train": "train",
    "edgessl.export": "export",
    "edgessl.calibration": "calibration",
    "edgessl.edge_runtime": "edge_runtime",
    "edgessl_ros": "ros2_node/edgessl_ros",  # the ROS 2 node (also an ament_python package); needs the `ros` extra
}

setup(
    package_dir=FOLDERS,
    packages=[f"{name}.{sub}" if sub else name for name, folder in FOLDERS.items() for sub in ["", *find_packages(folder)]],
)
