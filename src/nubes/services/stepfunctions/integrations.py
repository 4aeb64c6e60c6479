"""Task execution: service integrations, Lambda, activities and task tokens.

:class:`Integrations` is the interpreter's ``TaskExecutor``. Every call to another
service goes through the app (``app.dispatch`` as a signed caller); errors of that service come
back as ``<Service>.<ErrorCode>`` (``DynamoDB.ConditionalCheckFailedException``),
as Step Functions reports them.

Task tokens are durable: ``sfn.tokens`` holds each waiting token's state, so a
callback (SendTaskSuccess/Failure/Heartbeat) works before or after a restart;
the waiter is woken through the bus (``sfn:token:<token>``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.stepfunctions import store
from nubes.services.stepfunctions.common import listening
from nubes.storage.base import Txn
from nubes.workflows.errors import HEARTBEAT_TIMEOUT, RUNTIME, TASK_FAILED, TIMEOUT, StatesError
from nubes.workflows.history import TaskRequest, payload, resource_kind

if TYPE_CHECKING:
    from nubes.app import App

#: ``arn:aws:states:::aws-sdk:<service>:<action>`` service names → nubes model names
SDK_SERVICES = {
    "sfn": "stepfunctions", "eventbridge": "events", "cloudwatchlogs": "logs",
    "cloudwatch": "monitoring", "apigateway": "apigateway", "dynamodb": "dynamodb",
}
#: error-name prefixes of the optimised integrations
ERROR_PREFIX = {
    "dynamodb": "DynamoDB", "sqs": "SQS", "sns": "SNS", "events": "EventBridge",
    "lambda": "Lambda", "states": "StepFunctions", "stepfunctions": "StepFunctions",
}
_OPTIMISED = {
    "dynamodb": ("dynamodb", {"getItem": "GetItem", "putItem": "PutItem",
                              "updateItem": "UpdateItem", "deleteItem": "DeleteItem"}),
    "sqs": ("sqs", {"sendMessage": "SendMessage"}),
    "sns": ("sns", {"publish": "Publish"}),
    "events": ("events", {"putEvents": "PutEvents"}),
}
#: how often a token waiter re-reads the store without a wake-up (a safety net: callbacks
#: wake it through the bus, which the broker relays to the other nodes)
TOKEN_POLL_SECONDS = 30.0
_ARN = re.compile(r"^arn:aws:lambda:([^:]+):(\d+):function:(.+)$")


def pascal(action: str) -> str:
    """``getObject`` → ``GetObject``."""
    return action[:1].upper() + action[1:]


def plain(value: Any) -> Any:
    """A service result as JSON (bytes as text, datetimes as ISO strings)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


async def drain(result: dict[str, Any]) -> dict[str, Any]:
    """Read streamed members (S3 GetObject's Body) into bytes."""
    out = dict(result)
    for key, value in result.items():
        if hasattr(value, "__aiter__"):
            out[key] = b"".join([chunk async for chunk in value])
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class Integrations:
    """Runs the tasks of executions on one app."""

    def __init__(self, app: App, start_child: Any = None) -> None:
        self.app = app
        #: ``async (machine_arn, input, name, region) -> execution_arn`` for nested executions
        self.start_child = start_child
        self.describe_child: Any = None

    async def run_task(self, request: TaskRequest) -> Any:
        """Dispatch one task by its resource ARN."""
        resource = request.resource
        if request.resumed and request.task_token and not await self.token_known(
                request.task_token):
            # the restart came before the token was handed out (or after its callback was
            # consumed but before the result was recorded): hand it out again, at least once
            request.resumed = False
        if ":activity:" in resource:  # activity names may contain dots
            return await self.activity(request)
        if request.resumed and request.task_token:
            return await self.wait_token(request)
        if _ARN.match(resource):
            return await self.lambda_plain(request)
        if not resource.startswith("arn:aws:states:::"):
            raise StatesError(RUNTIME, f"The resource {resource} is not a supported task")
        base, _, pattern = resource.partition(".")
        if pattern and pattern not in ("sync", "sync:2", "waitForTaskToken"):
            raise StatesError(RUNTIME, f"The resource {resource} has an unknown integration "
                              "pattern")
        result = await self.call_integration(base[len("arn:aws:states:::"):], pattern, request)
        if pattern == "waitForTaskToken":
            self.submitted(request, result)
            return await self.wait_token(request)
        return result

    @staticmethod
    def submitted(request: TaskRequest, result: Any) -> None:
        """``TaskSubmitted``: the job of a ``.sync``/``.waitForTaskToken`` task started."""
        _, resource_type, short = resource_kind(request.resource)
        text, truncated = payload(result)
        request.emit("TaskSubmitted", {"resourceType": resource_type, "resource": short,
                                       "output": text, "outputDetails": {"truncated": truncated}})

    async def call_integration(self, target: str, pattern: str, request: TaskRequest) -> Any:
        """Request-response (or ``.sync``) call of an optimised or SDK integration."""
        params = request.parameters if isinstance(request.parameters, dict) else {}
        region = request.execution.region
        if target.startswith("aws-sdk:"):
            _, service, action = target.split(":", 2)
            model = SDK_SERVICES.get(service, service)
            prefix = service[:1].upper() + service[1:]
            if isinstance(params.get("Body"), str):
                params = dict(params, Body=params["Body"].encode())
            result = await self.call(model, pascal(action), params, region, prefix, sdk=True)
            return plain(await drain(result))
        service, _, action = target.partition(":")
        if service == "lambda" and action == "invoke":
            return await self.lambda_invoke(params, region)
        if service == "apigateway" and action == "invoke":
            from nubes.services.stepfunctions import apigateway

            return await apigateway.invoke(self.app.settings.endpoint, params)
        if service == "states" and action == "startExecution":
            return await self.start_execution(params, pattern, region, request)
        if service in _OPTIMISED and action in _OPTIMISED[service][1]:
            model, actions = _OPTIMISED[service]
            params = self._stringify(service, params)
            result = plain(await self.call(model, actions[action], params, region,
                                           ERROR_PREFIX[service]))
            if service == "events" and result.get("FailedEntryCount"):
                raise StatesError("EventBridge.FailedEntry", orjson.dumps(result).decode())
            return result
        raise StatesError(RUNTIME, f"The resource arn:aws:states:::{target} is not supported "
                          "by nubes")

    @staticmethod
    def _stringify(service: str, params: dict[str, Any]) -> dict[str, Any]:
        # Step Functions lets JSON bodies be objects; the services want strings
        out = dict(params)
        if service == "sqs" and "MessageBody" in out:
            out["MessageBody"] = _text(out["MessageBody"])
        if service == "sns" and "Message" in out:
            out["Message"] = _text(out["Message"])
        if service == "events":
            out["Entries"] = [
                dict(e, Detail=_text(e["Detail"])) if "Detail" in e else e
                for e in out.get("Entries", [])
            ]
        return out

    async def dispatch(self, model: str, operation: str, params: dict[str, Any],
                       region: str) -> dict[str, Any]:
        """Call another service as the execution's (signed) identity: services that
        treat unsigned callers as anonymous (S3) must see a signed caller."""
        access_key = next(iter(self.app.settings.credentials), None)
        ctx = self.app.context(model, operation, region=region, access_key=access_key)
        return await self.app.dispatch(ctx, params)

    async def call(self, model: str, operation: str, params: dict[str, Any], region: str,
                   prefix: str, *, sdk: bool = False) -> dict[str, Any]:
        """:meth:`dispatch` with AWS errors turned into States errors. SDK integrations
        name errors after the SDK's exception classes (``S3.NoSuchKeyException``)."""
        try:
            return await self.dispatch(model, operation, params, region)
        except AwsError as err:
            code = err.code
            if sdk and not code.endswith("Exception"):
                code += "Exception"
            raise StatesError(f"{prefix}.{code}", err.message) from None

    # -- Lambda ------------------------------------------------------------------------

    async def _invoke(self, params: dict[str, Any], region: str) -> tuple[dict[str, Any], Any]:
        payload = params.get("Payload", {})
        body = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
        call = {k: v for k, v in params.items() if k != "Payload"}
        call["Payload"] = body
        result = await self.call("lambda", "Invoke", call, region, "Lambda")
        raw = result.get("Payload") or b""
        text = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
        try:
            value = orjson.loads(text) if text else None
        except orjson.JSONDecodeError:
            value = text
        if result.get("FunctionError"):
            error = value.get("errorType") if isinstance(value, dict) else None
            raise StatesError(str(error or "Lambda.Unknown"), text)
        return result, value

    async def lambda_invoke(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        """``arn:aws:states:::lambda:invoke``: the Invoke response with a parsed Payload."""
        if "FunctionName" not in params:
            raise StatesError(RUNTIME, "The field 'FunctionName' is required")
        result, value = await self._invoke(params, region)
        return {"ExecutedVersion": result.get("ExecutedVersion", "$LATEST"), "Payload": value,
                "StatusCode": result.get("StatusCode", 200),
                "SdkHttpMetadata": {"HttpStatusCode": result.get("StatusCode", 200)},
                "SdkResponseMetadata": {}}

    async def lambda_plain(self, request: TaskRequest) -> Any:
        """A plain function ARN as Resource: the function's own result."""
        match = _ARN.match(request.resource)
        region = match.group(1) if match else request.execution.region
        _, value = await self._invoke(
            {"FunctionName": request.resource, "Payload": request.parameters}, region)
        return value

    # -- nested executions -------------------------------------------------------------

    async def start_execution(self, params: dict[str, Any], pattern: str, region: str,
                              request: TaskRequest) -> Any:
        """``states:startExecution`` (request-response, ``.sync``, ``.sync:2``)."""
        call = dict(params)
        if "Input" in call and not isinstance(call["Input"], str):
            call["Input"] = orjson.dumps(call["Input"]).decode()
        lowered = {k[:1].lower() + k[1:]: v for k, v in call.items()}
        started = await self.call("stepfunctions", "StartExecution", lowered, region,
                                  "StepFunctions")
        if pattern not in ("sync", "sync:2"):
            return plain(started)
        self.submitted(request, plain(started))
        arn = started["executionArn"]
        while True:
            async with listening(self.app.bus, f"sfn:done:{arn}", TOKEN_POLL_SECONDS) as done:
                desc = await self.dispatch("stepfunctions", "DescribeExecution",
                                           {"executionArn": arn}, region)
                if desc["status"] != "RUNNING":
                    break
                await done
        out = plain(desc)
        out = {k[:1].upper() + k[1:]: v for k, v in out.items()}
        if pattern == "sync:2" and isinstance(out.get("Output"), str):
            out["Output"] = orjson.loads(out["Output"])
        if desc["status"] != "SUCCEEDED":
            raise StatesError(TASK_FAILED if desc["status"] == "FAILED" else
                              "States.TaskFailed", orjson.dumps(out).decode())
        return out

    # -- task tokens -------------------------------------------------------------------

    async def token_known(self, token: str) -> bool:
        """Whether ``token`` is recorded (handed out, its callback not yet consumed)."""
        return bool(await self.app.store.read(
            lambda txn: txn.get(store.TOKENS, store.key(token)) is not None))

    async def register_token(self, token: str, request: TaskRequest,
                             activity: str | None = None,
                             also: Callable[[Txn], object] | None = None) -> None:
        """Record a waiting token (idempotent: a resumed task keeps its record); ``also``
        runs in the same transaction when the token is new."""
        now = time.time()
        doc = {"token": token, "executionArn": request.execution.execution_arn,
               "state": request.state_name, "status": "WAITING", "created": now,
               "heartbeat_at": now, "activity": activity}
        arn = request.execution.execution_arn

        def insert(txn: Txn) -> None:
            if txn.insert(store.TOKENS, store.key(token), orjson.dumps(doc)):
                txn.put(store.EXEC_TOKENS, store.key(arn, token), b"{}")
                if also is not None:
                    also(txn)

        await self.app.store.write(insert)

    async def wait_token(self, request: TaskRequest) -> Any:
        """Wait until SendTaskSuccess/Failure for the request's token (heartbeats
        checked), then return its output or raise its error."""
        token = request.task_token
        assert token is not None
        await self.register_token(token, request)
        await request.flush()  # TaskSubmitted shows in the history while the task waits
        started_emitted = False
        while True:
            # listen before reading, so a callback between the read and the wait wakes us
            async with listening(self.app.bus, f"sfn:token:{token}",
                                 TOKEN_POLL_SECONDS) as woken:
                doc = await self.app.store.read(lambda txn: store.get(txn, store.TOKENS,
                                                                      store.key(token)))
                if doc is None:
                    raise StatesError(RUNTIME, "The task token is no longer known")
                if doc["status"] in ("SUCCEEDED", "FAILED", "TIMED_OUT"):
                    return await self._token_done(token, doc)
                if doc.get("worker") is not None and not started_emitted:
                    request.emit("ActivityStarted", {"workerName": doc["worker"]})
                    started_emitted = True
                timeout = await self._token_timeout(token, doc, request)
                try:
                    await asyncio.wait({woken}, timeout=timeout)
                except asyncio.CancelledError:
                    # the task's TimeoutSeconds (the interpreter's timer) cancelled us; a
                    # shutdown before the deadline leaves the token waiting for the restart
                    deadline = doc["created"] + (request.timeout_seconds or float("inf"))
                    if time.time() >= deadline - 0.1:
                        await asyncio.shield(self.end_token(token, "TIMED_OUT"))
                    raise

    async def _token_done(self, token: str, doc: dict[str, Any]) -> Any:
        if doc["status"] == "TIMED_OUT":
            raise StatesError(TIMEOUT, "")
        await self.forget_token(token, str(doc["executionArn"]))
        if doc["status"] == "FAILED":
            raise StatesError(doc.get("error") or "", doc.get("cause") or "")
        return orjson.loads(doc["output"])

    async def _token_timeout(self, token: str, doc: dict[str, Any],
                             request: TaskRequest) -> float:
        """Seconds to wait before looking again; raises when a timeout has passed."""
        timeout = TOKEN_POLL_SECONDS
        if request.timeout_seconds:
            # measured from when the token was handed out, so it survives a restart
            left = doc["created"] + request.timeout_seconds - time.time()
            if left <= 0:
                await self.end_token(token, "TIMED_OUT")
                raise StatesError(TIMEOUT, "")
            timeout = min(timeout, left)
        if request.heartbeat_seconds:
            remaining = doc["heartbeat_at"] + request.heartbeat_seconds - time.time()
            if remaining <= 0:
                await self.end_token(token, "TIMED_OUT")
                raise StatesError(HEARTBEAT_TIMEOUT, "")
            timeout = min(timeout, remaining)
        return timeout

    async def forget_token(self, token: str, execution_arn: str) -> None:
        """Drop a token whose callback was consumed."""

        def forget(txn: Txn) -> None:
            txn.delete(store.TOKENS, store.key(token))
            txn.delete(store.EXEC_TOKENS, store.key(execution_arn, token))

        await self.app.store.write(forget)

    async def end_token(self, token: str, status: str) -> None:
        """Mark a token as no longer waiting (TIMED_OUT)."""

        def mark(txn: Txn) -> None:
            doc = store.get(txn, store.TOKENS, store.key(token))
            if doc is not None and doc["status"] in ("WAITING", "STARTED"):
                doc["status"] = status
                store.put(txn, store.TOKENS, store.key(token), doc)

        await self.app.store.write(mark)

    # -- activities --------------------------------------------------------------------

    async def activity(self, request: TaskRequest) -> Any:
        """Schedule an activity task (unless resumed) and wait for its worker."""
        token = request.task_token
        assert token is not None
        arn = request.resource
        if not request.resumed:
            exists = await self.app.store.read(
                lambda txn: txn.get(store.ACTIVITIES, store.key(*_activity_key(arn))))
            if exists is None:
                raise StatesError("States.Runtime", f"Activity does not exist: {arn}")
            message = orjson.dumps({"token": token, "input": _text(request.parameters)})
            # the token and its task together: a restart finds both or neither
            await self.register_token(token, request, activity=arn, also=lambda txn: txn.enqueue(
                store.activity_queue(arn), message, now=time.time()))
            self.app.bus.wake(f"sfn:activity:{arn}")
        return await self.wait_token(request)


def _activity_key(arn: str) -> tuple[str, str]:
    parts = arn.split(":")
    return parts[3], parts[-1]


def activity_key(arn: str) -> tuple[str, str]:
    """(region, name) of an activity ARN."""
    return _activity_key(arn)
