"""The one exception type for expected user mistakes.

The CLI prints an ``EdgesslError`` as a single line and exits non-zero, without a
traceback; anything else is a bug and keeps its traceback.
"""


class EdgesslError(Exception):
    """A mistake in the input (path, data, option, bundle) that the user can fix."""
