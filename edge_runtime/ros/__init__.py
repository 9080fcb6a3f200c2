"""ROS 2 without a ROS install: ``sensor_msgs`` image messages to pixels, a recorded bag as a
source of frames, and bags as training data (``bag_dataset``)."""
