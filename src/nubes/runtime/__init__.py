"""Running functions: the zygote, per-function pools, limits, the Lambda Runtime API.

The Lambda provider resolves a function version into a :class:`FunctionSpec` and
calls :meth:`RuntimeManager.invoke`; it gets an :class:`InvocationResult` back (or
:class:`TooManyRequests`). Everything else here is internal:

- ``zygote.py`` / ``zygote_client.py`` — the pre-imported interpreter that forks
  instance processes, and the manager's side of it (spares forked ahead of need)
- ``instance.py``, ``logcapture.py``, ``context.py``, ``awshosts.py``,
  ``sandbox.py`` — what runs inside a Python instance
- ``python_worker.py`` / ``provided.py`` — the manager's side of one instance
  (framed channel, or ``bootstrap`` plus the Runtime API)
- ``base.py`` — timeout, memory limit, exits, stray output for every instance
- ``manager.py`` — pools, concurrency, keep-alive, START/END/REPORT
- ``layers.py`` — AWS's public Powertools layer ARNs as installed releases
"""

from nubes.runtime.manager import RuntimeManager
from nubes.runtime.spec import FunctionSpec, InvocationResult, TooManyRequests

__all__ = ["FunctionSpec", "InvocationResult", "RuntimeManager", "TooManyRequests"]
