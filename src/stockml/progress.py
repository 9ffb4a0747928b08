"""The progress callback that long-running functions accept, and nothing else.

``progress(task, done, total)``: ``task`` names the work (``"features"``, ``"walk-forward"``),
``done`` of ``total`` steps are finished. Domain functions take it as an optional argument and
call it as they go; the command line turns the calls into progress bars. Logs stay one line
per fold or per run: per-symbol progress goes through this callback, never the log.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
