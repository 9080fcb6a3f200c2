"""ROS 2 without a ROS install: ``sensor_msgs`` image messages to pixels, and a recorded bag as a
source of frames."""
