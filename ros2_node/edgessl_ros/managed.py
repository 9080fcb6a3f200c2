"""The edgessl node as a managed (lifecycle) node: the same parameters, topics and scoring as
``edgessl_ros.node``, started and stopped by a lifecycle manager through ``change_state``.

    unconfigured --configure--> inactive   loads and verifies the bundle (a refused bundle: the
                                           transition fails with the reason in the log), creates the
                                           publishers and the /diagnostics timer
    inactive     --activate-->  active     subscribes to the cameras and starts scoring
    active       --deactivate-> inactive   stops scoring and publishing (/diagnostics goes on)
    inactive     --cleanup-->   unconfigured  releases the model, the publishers and the timer

    python -m edgessl_ros.managed --ros-args -p bundle:=BUNDLE
    ros2 lifecycle set /edgessl_node configure && ros2 lifecycle set /edgessl_node activate

Parameters with wrong values (not a bundle's) make the process exit 2 at start, as the plain node does.
"""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from edgessl.edge_runtime.errors import EdgesslError

from . import names
from .node import ParamsMixin, Scoring, run


class EdgesslManagedNode(ParamsMixin, LifecycleNode):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(names.NODE, **node_kwargs)
        self._init_params()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.scoring = Scoring(self, self.params, managed=True)
        except EdgesslError as exc:
            self.get_logger().error(f"configure refused: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: {self.params.bundle} ({self.scoring.pipeline.precision_key} on "
                               f"{self.scoring.pipeline.backend}) for {', '.join(self.scoring.cameras)}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.scoring.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.scoring.stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_shutdown(state)

    def _release(self) -> None:
        if self.scoring is not None:
            self.scoring.destroy()
            self.scoring = None

    def close(self) -> None:
        self._release()
        self.destroy_node()


def main(args: list[str] | None = None) -> int:
    return run(EdgesslManagedNode, args)


if __name__ == "__main__":
    sys.exit(main())
