"""What every function instance has, whatever runs inside: limits, exits, stray output.

An instance runs one invocation at a time. :meth:`BaseInstance.invoke` sends the
request (subclass), then waits for whichever comes first: the response, the
timeout (kill the process group), the memory limit (kill), or the process
exiting (``Runtime.ExitError``). Output the process writes straight to its file
descriptors 1 and 2 is collected as log lines of the running invocation.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nubes.runtime.protocol import LogEvent
from nubes.runtime.spec import FunctionSpec

#: how often a busy instance's memory is checked when no cgroup enforces it
MEMORY_POLL_S = 0.02
#: a sample costs ~10 us of CPU: with many busy instances a round is spaced out so
#: that sampling takes at most this share of the time
MEMORY_POLL_SHARE = 0.05
_SAMPLE_COST_S = 10e-6
#: event loop timers may fire this much early (their clock resolution)
_TIMER_SLACK_S = 0.001
#: how long a timed-out process may take to hand over its buffered logs
LOG_GRACE_S = 0.1
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

_SIGNAL_TEXT = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGKILL: "killed",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGPIPE: "broken pipe",
    signal.SIGQUIT: "quit",
    signal.SIGTRAP: "trace/breakpoint trap",
}


def describe_exit(code: int) -> str:
    """A process's end as AWS words it (Go's ``exec.ExitError`` text)."""
    if code >= 0:
        return f"exit status {code}"
    try:
        sig = signal.Signals(-code)
    except ValueError:
        return f"signal {-code}"
    return "signal: " + _SIGNAL_TEXT.get(sig, sig.name.lower())


@dataclass
class Outcome:
    """What one instance produced for one invocation, before START/END/REPORT."""

    payload: bytes
    error_type: str | None = None
    logs: list[LogEvent] = field(default_factory=list)
    max_rss_kb: int = 0
    #: REPORT status: None, "error" (runtime failure) or "timeout"
    status: str | None = None
    #: False when the instance is gone and must be replaced
    reusable: bool = True


def error_outcome(error_type: str, message: str, *, status: str, line: str) -> Outcome:
    """A platform-made failure (timeout, exit, out of memory): payload plus its log line."""
    payload = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    now = int(time.time() * 1000)
    return Outcome(payload, error_type, [(now, line)], status=status, reusable=False)


def read_rss_kb(pid: int) -> int:
    """Resident memory of a process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def read_tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and everything it started (as AWS counts a sandbox).

    Follows ``/proc/<pid>/task/<pid>/children``; shared pages count in each process,
    so this errs on the high side, like RSS does.
    """
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += read_rss_kb(p)
        try:
            with open(f"/proc/{p}/task/{p}/children", "rb") as f:
                todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return total


def _read_all_rss_kb(pids: list[int]) -> list[int]:
    return [read_tree_rss_kb(pid) for pid in pids]


def read_peak_rss_kb(pid: int) -> int:
    """Peak resident memory (``VmHWM``) of a process (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return 0


class MemoryWatch:
    """Samples the memory of every busy instance of a manager, in rounds, off the loop.

    One timer per instance read ``/proc`` on the event loop every 20 ms each: with
    hundreds of busy instances that took a quarter of the loop's time. A round reads
    every busy instance in a worker thread, then checks the limits on the loop.
    """

    def __init__(self) -> None:
        self._busy: set[BaseInstance] = set()
        self._task: asyncio.Task[None] | None = None

    def watch(self, inst: BaseInstance) -> None:
        """Sample ``inst`` until :meth:`forget`."""
        self._busy.add(inst)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def forget(self, inst: BaseInstance) -> None:
        """Its invocation ended."""
        self._busy.discard(inst)

    async def _run(self) -> None:
        while self._busy:
            cost = len(self._busy) * _SAMPLE_COST_S
            await asyncio.sleep(max(MEMORY_POLL_S, cost / MEMORY_POLL_SHARE))
            batch = [(i, i.pid, i._pending) for i in self._busy if i.pid is not None]
            pids = [pid for _, pid, _ in batch if pid is not None]
            samples = await asyncio.to_thread(_read_all_rss_kb, pids)
            for (inst, _, pending), rss_kb in zip(batch, samples, strict=True):
                # the same invocation still running (not a later one of the instance)
                if inst._pending is pending and pending is not None and not pending.done():
                    inst.memory_sample(rss_kb)

    async def stop(self) -> None:
        """Stop sampling."""
        self._busy.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class BaseInstance(abc.ABC):
    """One execution environment of one function version."""

    def __init__(self, spec: FunctionSpec, log_stream: str, tmp_dir: Path) -> None:
        self.spec = spec
        self.revision = spec.revision
        self.log_stream = log_stream
        self.tmp_dir = tmp_dir
        self.pid: int | None = None
        self.alive = True
        self.idle_since = time.monotonic()
        #: set after start(); reported once, with the first invocation
        self.init_duration_ms: float | None = None
        #: when init failed: the outcome every invocation of this instance gets
        self.init_error: Outcome | None = None
        self.init_logs: list[LogEvent] = []
        self._pending: asyncio.Future[Outcome] | None = None
        self._request_id = ""
        self._stray: list[LogEvent] = []
        self._stray_partial = b""
        self._watcher: asyncio.TimerHandle | None = None
        #: loop time at which the running invocation times out
        self._deadline = 0.0
        self._grace: asyncio.TimerHandle | None = None
        #: highest resident memory seen by the watcher (kB)
        self._peak_rss_kb = 0
        #: samples memory in rounds with the manager's other instances; without one
        #: the instance's own timer does, on the loop
        self.memory_watch: MemoryWatch | None = None

    @abc.abstractmethod
    async def start(self) -> None:
        """Create the process and run the function's init."""

    @abc.abstractmethod
    def _send_invoke(self, header: dict[str, Any], payload: bytes) -> None:
        """Hand one invocation to the process."""

    async def invoke(self, header: dict[str, Any], payload: bytes) -> Outcome:
        """Run one invocation under the function's timeout and memory limit."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        self._pending = fut
        self._request_id = header["id"]
        self._send_invoke(header, payload)
        # one timer per invocation watches the timeout (and the memory, without a watch)
        self._deadline = loop.time() + self.spec.timeout_s
        watch = self.memory_watch
        if watch is not None:
            watch.watch(self)
            self._watcher = loop.call_at(self._deadline, self._watch)
        else:
            first = min(self._deadline, loop.time() + MEMORY_POLL_S)
            self._watcher = loop.call_at(first, self._watch)
        try:
            outcome = await fut
        finally:
            if watch is not None:
                watch.forget(self)
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
            if self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None
            self._pending = None
        outcome.logs = self._merge_stray(outcome.logs)
        # the watcher's samples include processes the function started; like AWS's
        # figure it never exceeds the configured memory
        peak = max(outcome.max_rss_kb, self._peak_rss_kb)
        outcome.max_rss_kb = min(peak, self.spec.memory_mb * 1024)
        return outcome

    def _finish(self, outcome: Outcome) -> None:
        fut = self._pending
        if fut is not None and not fut.done():
            fut.set_result(outcome)

    def request_logs(self) -> bool:
        """Ask the process to hand over buffered log lines; True if it will answer."""
        return False

    def logs_flushed(self) -> None:
        """The process answered :meth:`request_logs`: a pending timeout can kill now."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
            self._timeout_now()

    def _timed_out(self) -> None:
        if self._pending is None or self._pending.done():
            return
        if self.request_logs():
            # what the function printed before it hung belongs in the log; give the
            # process a moment to send it, then kill it either way
            self._grace = asyncio.get_running_loop().call_later(LOG_GRACE_S, self._timeout_now)
        else:
            self._timeout_now()

    def _timeout_now(self) -> None:
        self._grace = None
        peak_kb = read_peak_rss_kb(self.pid) if self.pid is not None else 0
        self.kill()
        rid, secs = self._request_id, self.spec.timeout_s
        now = time.time()
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        )
        outcome = error_outcome(
            "Sandbox.Timedout",
            f"RequestId: {rid} Error: Task timed out after {secs:.2f} seconds",
            status="timeout",
            line=f"{stamp} {rid} Task timed out after {secs:.2f} seconds",
        )
        outcome.max_rss_kb = max(peak_kb, self._peak_rss_kb)
        self._finish(outcome)

    def _watch(self) -> None:
        """The running invocation's timer: memory every MEMORY_POLL_S, then the timeout."""
        self._watcher = None
        if self._pending is None or self._pending.done():
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._deadline - _TIMER_SLACK_S:
            self._timed_out()
            return
        if self.memory_watch is not None:
            self._watcher = loop.call_at(self._deadline, self._watch)
            return
        if self.pid is not None and self.memory_sample(read_tree_rss_kb(self.pid)):
            return
        self._watcher = loop.call_at(min(self._deadline, now + MEMORY_POLL_S), self._watch)

    def memory_sample(self, rss_kb: int) -> bool:
        """The running invocation's memory; kill the instance and fail it when over its limit."""
        self._peak_rss_kb = max(self._peak_rss_kb, rss_kb)
        if rss_kb > self.spec.memory_mb * 1024:
            self.kill()
            message = (
                f"RequestId: {self._request_id} Error: Runtime exited with error: signal: killed"
            )
            outcome = error_outcome(
                "Runtime.OutOfMemory",
                message,
                status="error",
                line=message + "\nRuntime.OutOfMemory",
            )
            outcome.max_rss_kb = self.spec.memory_mb * 1024
            self._finish(outcome)
            return True
        return False

    def exited(self, code: int) -> None:
        """The process ended (``code`` < 0: killed by that signal); fail what it was running."""
        self.alive = False
        if self._pending is not None and not self._pending.done():
            message = (
                f"RequestId: {self._request_id} Error: Runtime exited with error: "
                + describe_exit(code)
            )
            outcome = error_outcome(
                "Runtime.ExitError", message, status="error", line=message + "\nRuntime.ExitError"
            )
            outcome.max_rss_kb = self._peak_rss_kb  # the process is gone: the last sample
            self._finish(outcome)

    def output(self, data: bytes) -> None:
        """Bytes the process wrote to its stdout/stderr file descriptors."""
        now = int(time.time() * 1000)
        data = self._stray_partial + data
        *lines, self._stray_partial = data.split(b"\n")
        self._stray.extend((now, line.decode(errors="replace")) for line in lines)

    def _merge_stray(self, logs: list[LogEvent]) -> list[LogEvent]:
        if self._stray_partial:
            self.output(b"\n")
        if not self._stray:
            return logs
        # early-flushed lines precede the rest on equal timestamps (stable sort)
        merged = sorted(self._stray + logs, key=lambda e: e[0])
        self._stray = []
        return merged

    def take_stray(self) -> list[LogEvent]:
        """Output written while no invocation ran (init, between invocations)."""
        return self._merge_stray([])

    def kill(self) -> None:
        """Kill the instance's whole process group now."""
        self.alive = False
        if self.pid is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass

    async def stop(self) -> None:
        """Stop the instance and delete its /tmp directory."""
        self.kill()
        await asyncio.to_thread(shutil.rmtree, self.tmp_dir, True)
