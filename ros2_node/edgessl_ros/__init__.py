"""edgessl's ROS 2 node (ament_python package ``edgessl_ros``): a thin rclpy adapter over the runtime.

``names`` (topics and parameters, importable without rclpy), ``messages`` (ROS messages <-> runtime
data), ``node`` (the node and its ``main``), ``managed`` (the same node as a lifecycle node) and
``camera`` (a test-pattern camera).
"""
