"""ament_python build of the edgessl_ros package (``colcon build`` in a ROS 2 workspace).

The runtime it wraps is the ``edgessl`` pip package: install it into the same Python first
(``pip install "edgessl[runtime]"``). Outside colcon, ``pip install -e .`` at the edgessl repository
root installs ``edgessl_ros`` too.
"""

from glob import glob

from setuptools import setup

PACKAGE = "edgessl_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="edgessl maintainers",
    maintainer_email="edgessl@example.org",
    description="edgessl anomaly detection on a ROS 2 camera topic",
    license="Apache-2.0",
    entry_points={"console_scripts": [f"edgessl_node = {PACKAGE}.node:main",
                                      f"edgessl_managed_node = {PACKAGE}.managed:main",
                                      f"edgessl_camera = {PACKAGE}.camera:main"]},
)
