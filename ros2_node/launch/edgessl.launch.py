"""Launch the edgessl node.

    ros2 launch edgessl_ros edgessl.launch.py bundle:=/path/to/bundle input_topic:=/camera/image_raw
    ros2 launch edgessl_ros edgessl.launch.py bundle:=... params_file:=/path/to/params.yaml namespace:=cam0

Every parameter comes from ``params_file`` (default: the package's config/params.yaml); the
``bundle`` and ``input_topic`` arguments override the file. Names come from ``edgessl_ros.names``.
The launch imports stay inside the function so this file can be imported without ``launch``.
"""

from edgessl_ros.names import EXECUTABLE, NODE, PACKAGE, NodeParams


def generate_launch_description():
    import os

    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "params.yaml")
    args = [
        DeclareLaunchArgument("bundle", description="path of the edgessl bundle (edgessl export)"),
        DeclareLaunchArgument("input_topic", default_value=NodeParams.input_topic,
                              description="sensor_msgs/Image (or CompressedImage) topic to score"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML file with the node's other parameters"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
    ]
    overrides = {name: ParameterValue(LaunchConfiguration(name), value_type=str) for name in ("bundle", "input_topic")}
    node = Node(package=PACKAGE, executable=EXECUTABLE, name=NODE, namespace=LaunchConfiguration("namespace"),
                parameters=[LaunchConfiguration("params_file"), overrides], output="screen", emulate_tty=True)
    return LaunchDescription([*args, node])
