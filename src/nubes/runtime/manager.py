"""The runtime manager: pools of warm instances per function, concurrency, logs.

Usable without the HTTP server: the Lambda provider (and unit tests) call
:meth:`RuntimeManager.invoke` with a resolved :class:`FunctionSpec`. Per function
version there is a pool that grows one instance per concurrent request, keeps
idle instances for ``settings.lambda_keepalive`` seconds and then stops them
(scale to zero). A revision change retires the old instances: idle ones stop at
once, busy ones when their invocation ends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import math
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nubes.aws.errors import AwsError
from nubes.runtime.base import BaseInstance, MemoryWatch, Outcome, read_peak_rss_kb
from nubes.runtime.protocol import LogEvent
from nubes.runtime.provided import ProvidedInstance
from nubes.runtime.python_worker import PythonInstance
from nubes.runtime.spec import (
    MAX_SYNC_RESPONSE_BYTES,
    FunctionSpec,
    InvocationResult,
    TooManyRequests,
    new_log_stream,
    response_too_large,
)
from nubes.runtime.zygote_client import ZygoteClient
from nubes.settings import Settings

log = logging.getLogger(__name__)

OnLogs = Callable[[FunctionSpec, str, list[LogEvent]], None]
OnInvocation = Callable[[FunctionSpec, InvocationResult], None]


def default_max_starting() -> int:
    """How many instances of one function may start at once: the CPUs this process may use.

    A cold start is mostly CPU (fork, the function's imports); more of them at once
    than there are CPUs only slows each other and the requests already running.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus)


#: what a request waiting for an instance is handed: a warm instance, or (None) a start slot
_Turn = asyncio.Future[BaseInstance | None]


@dataclass
class _Pool:
    """The instances of one function version."""

    revision: str
    idle: list[BaseInstance] = field(default_factory=list)
    instances: set[BaseInstance] = field(default_factory=set)
    #: instances being started now (each holds a start slot)
    starting: int = 0
    #: the most that were starting at once (stats, tests)
    peak_starting: int = 0
    #: requests waiting for an instance or a start slot, first come first served
    waiters: deque[_Turn] = field(default_factory=deque)


@dataclass
class _FunctionStats:
    busy: int = 0
    invocations: int = 0
    last_invocation: float | None = None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _trace_id() -> str:
    rand = secrets.token_hex(20)  # one call for both ids: this runs on every invocation
    return f"Root=1-{int(time.time()):08x}-{rand[:24]};Parent={rand[24:]};Sampled=0"


def parse_client_context(value: str | None) -> dict[str, Any] | None:
    """Invoke's ``ClientContext`` (base64 JSON, or plain JSON) as a dict."""
    if not value:
        return None
    for decode in (lambda v: base64.b64decode(v, validate=True), lambda v: v.encode()):
        try:
            obj = json.loads(decode(value))
        except (ValueError, binascii.Error):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _json_text(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def default_aws_hosts(settings: Settings) -> dict[int, tuple[str, int]]:
    """AWS names on port 80 (and any other port) lead to nubes's HTTP endpoint."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "", "localhost") else settings.host
    return {80: (host, settings.port)}


def _iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _json_platform_events(
    spec: FunctionSpec,
    request_id: str,
    outcome: Outcome,
    start_ms: int,
    end_ms: int,
    duration_ms: float,
    billed: int,
    used_mb: int,
    init_ms: float | None,
) -> list[LogEvent]:
    """START/REPORT as the JSON log format's ``platform.start``/``platform.report`` events.

    Both are INFO-level system logs: a SystemLogLevel of WARN drops them.
    """
    if (spec.system_log_level or "INFO").upper() == "WARN":
        return list(outcome.logs)
    metrics: dict[str, Any] = {
        "durationMs": round(duration_ms, 2),
        "billedDurationMs": billed,
        "memorySizeMB": spec.memory_mb,
        "maxMemoryUsedMB": used_mb,
    }
    if init_ms is not None:
        metrics["initDurationMs"] = round(init_ms, 2)
    record: dict[str, Any] = {"requestId": request_id, "metrics": metrics}
    record["status"] = outcome.status or "success"
    if outcome.status == "error" and outcome.error_type:
        record["errorType"] = outcome.error_type
    start = {"time": _iso_ms(start_ms), "type": "platform.start",
             "record": {"requestId": request_id, "version": spec.version}}  # fmt: skip
    report = {"time": _iso_ms(end_ms), "type": "platform.report", "record": record}
    return [(start_ms, json.dumps(start)), *outcome.logs, (end_ms, json.dumps(report))]


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def _prepare_dirs(spec: FunctionSpec, tmp_dir: Path) -> FunctionSpec:
    """Make an instance's /tmp directory; the spec with absolute code and layer paths."""
    tmp_dir.mkdir(parents=True)
    if spec.code_dir.is_absolute() and all(d.is_absolute() for d in spec.layer_dirs):
        return spec
    return dataclasses.replace(
        spec,
        code_dir=spec.code_dir.resolve(),
        layer_dirs=tuple(d.resolve() for d in spec.layer_dirs),
    )


class RuntimeManager:
    """Runs function invocations in warm, isolated instances."""

    def __init__(
        self,
        settings: Settings,
        *,
        platform_env: Mapping[str, str],
        on_logs: OnLogs | None = None,
        on_invocation: OnInvocation | None = None,
        aws_hosts: Mapping[int, tuple[str, int]] | None = None,
        isolate: bool = True,
        max_starting: int | None = None,
    ) -> None:
        self.settings = settings
        self.platform_env = dict(platform_env)
        #: inside Python instances, ``*.amazonaws.com:<port>`` connects to ``aws_hosts[port]``
        #: (default: port 80 → nubes's HTTP endpoint; the server adds 443 → its HTTPS one)
        self.aws_hosts: dict[int, tuple[str, int]] = (
            dict(aws_hosts) if aws_hosts is not None else default_aws_hosts(settings)
        )
        self.on_logs = on_logs
        #: give instances a private /tmp and read-only code where Linux allows (sandbox.py)
        self.isolate = isolate
        self.on_invocation = on_invocation
        #: instances of one function version that may be starting at the same time
        self.max_starting = max(1, max_starting or settings.lambda_max_starting or default_max_starting())
        # absolute: instances run with the function's code directory as their cwd
        self.work_dir = Path(settings.data_dir).resolve() / "runtime"
        self.zygote = ZygoteClient(self.work_dir, isolate=isolate)
        self.memory_watch = MemoryWatch()
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._functions: dict[str, _FunctionStats] = {}
        #: running invocations of functions without reserved concurrency
        self._busy_unreserved = 0
        #: reserved concurrency per function, as last seen or set
        self._reservations: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._zygote_start: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start the Python zygote (in the background) and the reaper.

        Start-up does not wait for the zygote (boto3's import takes 0.3-2 s): a cold
        start that comes before it is ready waits for it, later ones are fast.
        """
        self._stopping = False
        # /tmp directories of instances from a previous run that was killed
        await asyncio.to_thread(_fresh_dir, self.work_dir / "tmp")
        loop = asyncio.get_running_loop()
        if self._zygote_start is None or self._zygote_start.done():
            self._zygote_start = loop.create_task(self._start_zygote())
        if self._reaper is None:
            self._reaper = loop.create_task(self._reap_idle())

    async def _start_zygote(self) -> None:
        try:
            await self.zygote.ensure_started()
        except Exception:
            # the first invocation tries again and reports why it cannot run
            log.exception("the Python zygote did not start")

    async def stop(self) -> None:
        """Stop every instance and the zygote."""
        self._stopping = True
        for task in (self._reaper, self._zygote_start):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reaper = self._zygote_start = None
        for pool in self._pools.values():
            # requests waiting for a turn would start instances (and a zygote) again
            while (turn := self._next_waiter(pool)) is not None:
                turn.set_exception(
                    AwsError("ServiceException", "The function runtime is stopping", 500,
                             sender_fault=False, fields={"Type": "Service"})
                )  # fmt: skip
        instances = [i for pool in self._pools.values() for i in pool.instances]
        self._pools.clear()
        await asyncio.gather(*(i.stop() for i in instances), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.memory_watch.stop()
        await self.zygote.stop()

    # -- invoking ------------------------------------------------------------------

    async def invoke(
        self,
        spec: FunctionSpec,
        payload: bytes,
        *,
        request_id: str,
        client_context: str | None = None,
        identity: dict[str, Any] | None = None,
    ) -> InvocationResult:
        """Run one synchronous invocation; raises :class:`TooManyRequests` when throttled."""
        stats = self._functions.get(spec.name)
        if stats is None:
            stats = self._functions[spec.name] = _FunctionStats()
        reserved = spec.reserved_concurrency
        self.set_reserved_concurrency(spec.name, reserved)
        if reserved is not None:
            # a reservation is the function's own pool: exactly that many, never more
            if stats.busy >= reserved:
                raise TooManyRequests("ReservedFunctionConcurrentInvocationLimitExceeded")
        elif self._busy_unreserved >= self.unreserved_concurrency:
            raise TooManyRequests("ConcurrentInvocationLimitExceeded")
        stats.busy += 1
        unreserved = reserved is None
        self._busy_unreserved += unreserved
        try:
            result = await self._run(spec, payload, request_id, client_context, identity)
        finally:
            stats.busy -= 1
            self._busy_unreserved -= unreserved
        stats.invocations += 1
        stats.last_invocation = time.time()
        self._deliver(spec, result)
        return result

    async def _run(
        self,
        spec: FunctionSpec,
        payload: bytes,
        request_id: str,
        client_context: str | None,
        identity: dict[str, Any] | None,
    ) -> InvocationResult:
        pool = self._pool(spec)
        inst = self._take_idle(pool)
        start_ms = _now_ms()
        if inst is None:
            inst = await self._acquire(spec, pool)
        init_ms, inst.init_duration_ms = inst.init_duration_ms, None
        header = {
            "id": request_id,
            "deadline": _now_ms() + int(spec.timeout_s * 1000),
            "arn": spec.arn,
            # as JSON text: header values go through orjson, which would turn a client
            # context's integer past 64 bits into a float (see protocol.py)
            "cc": _json_text(parse_client_context(client_context)),
            "ci": _json_text(identity),
            "trace": _trace_id(),
        }
        started = time.perf_counter()
        if inst.init_error is not None:
            outcome = self._init_failure(inst, request_id)
        else:
            try:
                outcome = await inst.invoke(header, payload)
            except BaseException:
                # cancelled mid-invocation: the handler may still be running, so the
                # instance cannot serve anyone else
                self._discard(pool, inst)
                raise
        duration_ms = (time.perf_counter() - started) * 1000
        if outcome.error_type is None and len(outcome.payload) > MAX_SYNC_RESPONSE_BYTES:
            outcome.payload = response_too_large()
            outcome.error_type = "Function.ResponseSizeTooLarge"
        init_logs = inst.init_logs if init_ms is not None else []
        self._release(pool, inst, reusable=outcome.reusable)
        result = self._compose(spec, inst, request_id, outcome, start_ms, duration_ms, init_ms)
        if init_logs:
            # what init printed comes before START, as on AWS
            result.log_events[:0] = init_logs
            result.log_tail = "".join(m + "\n" for _, m in init_logs) + result.log_tail
        return result

    def _pool(self, spec: FunctionSpec) -> _Pool:
        key = (spec.name, spec.version)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(spec.revision)
        elif pool.revision != spec.revision:
            # new code or configuration: old instances drain, new requests get new ones
            pool.revision = spec.revision
            for inst in [i for i in pool.idle if i.revision != spec.revision]:
                self._discard(pool, inst)
        return pool

    def _take_idle(self, pool: _Pool) -> BaseInstance | None:
        while pool.idle:
            inst = pool.idle.pop()  # the most recently used one is the warmest
            if inst.alive and inst.revision == pool.revision:
                return inst
            self._discard(pool, inst)
        return None

    async def _acquire(self, spec: FunctionSpec, pool: _Pool) -> BaseInstance:
        """An instance for a request that found none idle.

        At most :attr:`max_starting` instances of a pool start at once: cold starts
        beyond the CPUs only slow each other and the running requests down, which
        under load makes requests queue, which starts more instances (a cold-start
        storm). A request over the limit waits for whichever comes first: an
        instance going idle (handed over warm) or a start slot. It waits at most the
        function's timeout; then it starts its own instance anyway, so the limit
        delays a request but never fails one.
        """
        deadline = time.monotonic() + spec.timeout_s
        while pool.waiters or pool.starting >= self.max_starting:
            inst = await self._wait_turn(pool, deadline - time.monotonic())
            if inst is None:
                break
            if inst.alive and inst.revision == pool.revision:
                return inst
            self._discard(pool, inst)  # died between its hand-over and now: wait on
        else:
            self._count_start(pool)
        # this request holds a start slot now
        try:
            return await self._spawn(spec, pool)
        finally:
            self._end_start(pool)

    @staticmethod
    def _count_start(pool: _Pool) -> None:
        pool.starting += 1
        pool.peak_starting = max(pool.peak_starting, pool.starting)

    async def _wait_turn(self, pool: _Pool, timeout_s: float) -> BaseInstance | None:
        """Queue for an idle instance (returned) or a start slot (None: the slot is ours)."""
        loop = asyncio.get_running_loop()
        turn: _Turn = loop.create_future()
        pool.waiters.append(turn)
        give_up = loop.call_later(max(0.0, timeout_s), self._stop_waiting, pool, turn)
        try:
            return await turn
        except BaseException:
            # cancelled: whatever was handed over in the meantime goes to the next in line
            with contextlib.suppress(ValueError):
                pool.waiters.remove(turn)
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                handed = turn.result()
                if handed is None:
                    self._end_start(pool)
                else:
                    self._release(pool, handed, reusable=True)
            raise
        finally:
            give_up.cancel()

    def _stop_waiting(self, pool: _Pool, turn: _Turn) -> None:
        """A request waited its function's timeout: it starts an instance past the limit."""
        if turn.done():
            return
        with contextlib.suppress(ValueError):
            pool.waiters.remove(turn)
        self._count_start(pool)
        turn.set_result(None)

    def _next_waiter(self, pool: _Pool) -> _Turn | None:
        while pool.waiters:
            turn = pool.waiters.popleft()
            if not turn.done():
                return turn
        return None

    def _end_start(self, pool: _Pool) -> None:
        """A start finished (or failed): its slot goes to the first waiting request."""
        turn = self._next_waiter(pool)
        if turn is None:
            pool.starting -= 1
        else:
            turn.set_result(None)  # the slot changes hands: ``starting`` stays

    def _make_idle(self, pool: _Pool, inst: BaseInstance) -> None:
        """A reusable instance is free: hand it to the first waiting request, else keep it."""
        turn = self._next_waiter(pool)
        if turn is not None:
            turn.set_result(inst)
            return
        inst.idle_since = time.monotonic()
        pool.idle.append(inst)

    async def _spawn(self, spec: FunctionSpec, pool: _Pool) -> BaseInstance:
        if not (spec.is_python or spec.is_provided):
            raise AwsError(
                "InvalidRuntimeException",
                f"The runtime {spec.runtime} is not supported by nubes "
                "(python3.x and provided.al2/provided.al2023 are)",
                502,
            )
        log_stream = new_log_stream(spec.version)
        tmp_dir = self.work_dir / "tmp" / log_stream.rsplit("]", 1)[1]
        # file system calls can take milliseconds on a busy disk: not on the event loop
        spec = await asyncio.to_thread(_prepare_dirs, spec, tmp_dir)
        inst: BaseInstance
        if spec.is_python:
            inst = PythonInstance(
                spec, log_stream, tmp_dir, self.zygote, self.platform_env, self.aws_hosts,
                self.isolate,
            )  # fmt: skip
        else:
            inst = ProvidedInstance(
                spec, log_stream, tmp_dir, self.platform_env, self.zygote, self.isolate
            )
        inst.memory_watch = self.memory_watch
        pool.instances.add(inst)
        try:
            await inst.start()
        except BaseException:
            pool.instances.discard(inst)
            await inst.stop()
            raise
        return inst

    def _init_failure(self, inst: BaseInstance, request_id: str) -> Outcome:
        err = inst.init_error
        assert err is not None
        payload = err.payload
        body = json.loads(payload)
        if isinstance(body, dict) and str(body.get("errorMessage", "")).startswith("Error: "):
            # platform-made init failures name the invocation they failed, as AWS's do
            body["errorMessage"] = f"RequestId: {request_id} {body['errorMessage']}"
            payload = json.dumps(body).encode()
        logs = [
            (ts, f"RequestId: {request_id} {m}" if m.startswith("Error: ") else m)
            for ts, m in err.logs
        ]
        max_rss = read_peak_rss_kb(inst.pid) if inst.pid else 0
        return Outcome(
            payload, err.error_type, logs, max_rss, status=err.status or "error", reusable=False
        )

    def _release(self, pool: _Pool, inst: BaseInstance, *, reusable: bool) -> None:
        keep = (
            reusable
            and inst.alive
            and inst.revision == pool.revision
            and not self._stopping
            and self._pools.get((inst.spec.name, inst.spec.version)) is pool
        )
        if keep:
            self._make_idle(pool, inst)
        else:
            self._discard(pool, inst)

    def _discard(self, pool: _Pool, inst: BaseInstance) -> None:
        pool.instances.discard(inst)
        with contextlib.suppress(ValueError):
            pool.idle.remove(inst)
        task = asyncio.get_running_loop().create_task(inst.stop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- logs and results ------------------------------------------------------------

    def _compose(
        self,
        spec: FunctionSpec,
        inst: BaseInstance,
        request_id: str,
        outcome: Outcome,
        start_ms: int,
        duration_ms: float,
        init_ms: float | None,
    ) -> InvocationResult:
        rss_kb = outcome.max_rss_kb or (read_peak_rss_kb(inst.pid) if inst.pid else 0)
        used_mb = max(1, math.ceil(rss_kb / 1024))
        billed = max(1, math.ceil(duration_ms))
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {billed} ms\tMemory Size: {spec.memory_mb} MB\t"
            f"Max Memory Used: {used_mb} MB\t"
        )
        if init_ms is not None:
            report += f"Init Duration: {init_ms:.2f} ms\t"
        if outcome.status is not None:
            report += f"Status: {outcome.status}\t"
            if outcome.status == "error" and outcome.error_type:
                report += f"Error Type: {outcome.error_type}\t"
        end_ms = _now_ms()
        if spec.log_format.upper() == "JSON":
            events = _json_platform_events(
                spec, request_id, outcome, start_ms, end_ms, duration_ms, billed, used_mb, init_ms
            )
        else:
            events = [(start_ms, f"START RequestId: {request_id} Version: {spec.version}")]
            events += outcome.logs
            events.append((end_ms, f"END RequestId: {request_id}"))
            events.append((end_ms, report))
        return InvocationResult(
            payload=outcome.payload,
            function_error="Unhandled" if outcome.error_type else None,
            log_tail="".join(m + "\n" for _, m in events),
            request_id=request_id,
            duration_ms=duration_ms,
            billed_duration_ms=billed,
            max_memory_used_mb=used_mb,
            init_duration_ms=init_ms,
            log_stream=inst.log_stream,
            error_type=outcome.error_type,
            status=outcome.status,
            log_events=events,
        )

    def _deliver(self, spec: FunctionSpec, result: InvocationResult) -> None:
        # a failing sink must not turn a finished invocation into an error
        if self.on_logs is not None:
            try:
                self.on_logs(spec, result.log_stream, result.log_events)
            except Exception:
                log.exception("on_logs failed for %s", spec.name)
        if self.on_invocation is not None:
            try:
                self.on_invocation(spec, result)
            except Exception:
                log.exception("on_invocation failed for %s", spec.name)

    # -- lifecycle -----------------------------------------------------------------

    def retire(self, function_name: str) -> None:
        """Code or configuration changed, or the function was deleted: drain its instances."""
        for key in [k for k in self._pools if k[0] == function_name]:
            pool = self._pools.pop(key)
            for inst in list(pool.idle):
                self._discard(pool, inst)
            # busy instances are discarded by _release: their pool is no longer registered

    def set_reserved_concurrency(self, function_name: str, value: int | None) -> None:
        """Record a function's reserved concurrency (PutFunctionConcurrency); None removes it.

        Reservations are carved out of the account's limit: functions without one
        share what is left (:attr:`unreserved_concurrency`), as on AWS.
        """
        if value is None:
            self._reservations.pop(function_name, None)
        else:
            self._reservations[function_name] = value

    @property
    def unreserved_concurrency(self) -> int:
        """The account limit minus every known reservation."""
        return self.settings.lambda_concurrency - sum(self._reservations.values())

    @property
    def isolation(self) -> bool:
        """True when instances get a private /tmp and read-only code (mount namespaces)."""
        return self.isolate and self.zygote.isolation_available

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per function: instances, starting, waiting (for an instance or a start slot),
        busy, invocations, last_invocation (epoch seconds)."""
        out: dict[str, dict[str, Any]] = {}
        for name, st in self._functions.items():
            pools = [p for k, p in self._pools.items() if k[0] == name]
            out[name] = {
                "instances": sum(len(p.instances) for p in pools),
                "starting": sum(p.starting for p in pools),
                "waiting": sum(sum(not t.done() for t in p.waiters) for p in pools),
                "busy": st.busy,
                "invocations": st.invocations,
                "last_invocation": st.last_invocation,
            }
        return out

    async def _reap_idle(self) -> None:
        """Stop instances idle longer than the keep-alive (scale to zero)."""
        keepalive = self.settings.lambda_keepalive
        interval = min(max(keepalive / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - keepalive
            for pool in list(self._pools.values()):
                for inst in [i for i in pool.idle if i.idle_since < cutoff or not i.alive]:
                    self._discard(pool, inst)
