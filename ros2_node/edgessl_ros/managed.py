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

Parameters with wrong values (not a bundle's) make the process exit 2 at start, as the plain node
does; a configure that fails says why in the log.

Every ``change_state`` request is answered, by id or by label, in every state: one the current
state has no transition for is refused (``success: false``, a warning in the log). rclpy 7.1
(ros2/rclpy#1209, fixed upstream, not in the 7.1.x wheel) lets such a request by id raise out of
the service callback and kill the node; the guard answers it before rclpy sees it.
"""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from edgessl.edge_runtime.streams.live import describe

from . import names
from .node import ParamsMixin, Scoring, run


class EdgesslManagedNode(ParamsMixin, LifecycleNode):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(names.NODE, **node_kwargs)
        self._init_params()
        self._guard_transitions()

    def _guard_transitions(self) -> None:
        """Refuse a ``change_state`` request the current state has no transition for (module docstring)."""
        service = self._service_change_state  # rclpy has no public hook before its own handler
        handle = service.callback

        def change_state(request, response):
            available = self._state_machine.available_transitions  # (id, label, ...) of each
            wanted = request.transition.label or request.transition.id  # a label, when given, decides
            if wanted not in {a[1] if request.transition.label else a[0] for a in available}:
                self.get_logger().warning(
                    f"change_state refused: no transition {wanted!r} from state {self._state_machine.current_state[1]} "
                    f"(available: {', '.join(a[1] for a in available) or 'none'})")
                response.success = False
                return response
            return handle(request, response)

        service.callback = change_state

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.scoring = Scoring(self, self.params, managed=True)
        except Exception as exc:  # a refused bundle, or anything else: the reason is logged, never lost
            self.get_logger().error(f"configure refused: {describe(exc)}")
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
