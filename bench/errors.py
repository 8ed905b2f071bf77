"""The one exception type for errors a user can cause.

The CLI catches it, prints its message without a traceback and exits non-zero. A message names
the thing that is wrong and how to fix it.
"""


class BenchError(Exception):
    """An error caused by the user's input, data or configuration (not a bug in css-bench)."""
