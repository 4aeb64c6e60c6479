"""Shared pieces of the CloudFormation provider: reading templates (bodies,
TemplateURLs on nubes' S3), parameters of a request, and the stack views the
API returns."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from nubes.aws.errors import AwsError
from nubes.deploy.engine import Engine
from nubes.deploy.intrinsics import StackInfo
from nubes.deploy.params import describe_parameters
from nubes.deploy.prepare import Plan, expand_template, plan
from nubes.deploy.resources.base import call_as
from nubes.deploy.stacks import StackStore, stack_arn, validation
from nubes.services.base import Provider, RequestContext

if TYPE_CHECKING:
    from nubes.app import App

log = logging.getLogger(__name__)

#: record keys that are ours, never shown in a Stack
INTERNAL = {
    "Resources", "TemplateBody", "Template", "ParameterValues", "Dependencies", "Imports",
    "StackPolicyBody", "RetainResources", "NoEcho", "OnFailure", "CallerAccessKey",
    "StackPolicyDuringUpdateBody", "PendingRollback",
}  # fmt: skip
_VIRTUAL_HOST = re.compile(r"^(?P<bucket>.+?)\.s3(?:[.-][a-z0-9-]+)?\.(?:amazonaws\.com|localhost(?:\.localstack\.cloud)?)$")
_NAME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]*$")
#: the largest TemplateBody, and the largest template read from a TemplateURL
MAX_BODY = 51_200
MAX_URL_BODY = 1_000_000
#: how long a stack operation call waits for the operation to finish
SETTLE_SECONDS = 10.0
#: the state an operation interrupted by a restart ends in
INTERRUPTED = {
    "CREATE_IN_PROGRESS": "CREATE_FAILED", "ROLLBACK_IN_PROGRESS": "ROLLBACK_FAILED",
    "DELETE_IN_PROGRESS": "DELETE_FAILED", "UPDATE_IN_PROGRESS": "UPDATE_ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_IN_PROGRESS": "UPDATE_ROLLBACK_FAILED",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS": "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS": "UPDATE_ROLLBACK_COMPLETE",
}  # fmt: skip
COMPLETE_STATES = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                   "IMPORT_ROLLBACK_COMPLETE", "UPDATE_FAILED"}


def check_stack_name(name: str) -> None:
    """Stack names: a letter, then letters, digits and hyphens, at most 128."""
    if not _NAME.match(name) or len(name) > 128:
        raise validation(f"1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*")


def s3_location(url: str) -> tuple[str, str]:
    """(bucket, key) of a TemplateURL or include Location: ``s3://b/k``, path style
    on any host (``http://127.0.0.1:4566/b/k``) or virtual-hosted S3 hosts."""
    parsed = urllib.parse.urlparse(url)
    path = urllib.parse.unquote(parsed.path.lstrip("/"))
    if parsed.scheme == "s3":
        return parsed.netloc, path
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise validation("TemplateURL must be a supported URL.")
    match = _VIRTUAL_HOST.match(parsed.hostname)
    if match and match.group("bucket") not in ("s3",):
        return match.group("bucket"), path
    bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise validation("TemplateURL must be a supported URL.")
    return bucket, key


def given_parameters(params: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """A request's Parameters list as (name → value, names using the previous value)."""
    given: dict[str, str] = {}
    previous: set[str] = set()
    for item in params.get("Parameters") or []:
        key = item.get("ParameterKey")
        if not key:
            raise validation("Parameters: ParameterKey is required for every parameter")
        if item.get("UsePreviousValue"):
            previous.add(key)
        else:
            given[key] = item.get("ParameterValue", "")
    return given, previous


def stack_view(record: dict[str, Any]) -> dict[str, Any]:
    """A stack record as DescribeStacks shows it."""
    out = {k: v for k, v in record.items() if k not in INTERNAL}
    out.setdefault("DriftInformation", {"StackDriftStatus": "NOT_CHECKED"})
    return out


def resource_view(record: dict[str, Any], resource: dict[str, Any], kind: str) -> dict[str, Any]:
    """One resource as StackResource / StackResourceSummary / StackResourceDetail."""
    out: dict[str, Any] = {
        "LogicalResourceId": resource["LogicalResourceId"],
        "PhysicalResourceId": resource.get("PhysicalResourceId", ""),
        "ResourceType": resource.get("ResourceType", ""),
        "ResourceStatus": resource.get("ResourceStatus", ""),
        "DriftInformation": {"StackResourceDriftStatus": "NOT_CHECKED"},
    }
    if resource.get("ResourceStatusReason"):
        out["ResourceStatusReason"] = resource["ResourceStatusReason"]
    stamp = resource.get("Timestamp", record["CreationTime"])
    if kind == "summary":
        out["LastUpdatedTimestamp"] = stamp
        return out
    out["StackName"] = record["StackName"]
    out["StackId"] = record["StackId"]
    if kind == "detail":
        out["LastUpdatedTimestamp"] = stamp
        metadata = (resource.get("Definition") or {}).get("Metadata")
        if metadata is not None:
            out["Metadata"] = json.dumps(metadata)
    else:
        out["Timestamp"] = stamp
    return out


class CloudFormationBase(Provider):
    """Stack records, the engine and template reading, shared by the stack and
    change set operations."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self._stacks: StackStore | None = None
        self._engine: Engine | None = None

    @property
    def stacks(self) -> StackStore:
        if self._stacks is None:
            self._stacks = StackStore(self.app.store, self.notify)
        return self._stacks

    async def notify(self, record: dict[str, Any], event: dict[str, Any]) -> None:
        """Publish a stack event to the stack's NotificationARNs, in CloudFormation's
        ``Key='value'`` lines; a topic that fails never fails the stack."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event["Timestamp"]))
        fields = {
            "StackId": event["StackId"], "Timestamp": f"{stamp}.000Z", "EventId": event["EventId"],
            "LogicalResourceId": event["LogicalResourceId"], "Namespace": record["StackId"].split(":")[4],
            "PhysicalResourceId": event.get("PhysicalResourceId", ""), "PrincipalId": "AIDACKCEVSQ6C2EXAMPLE",
            "ResourceProperties": event.get("ResourceProperties", "null"), "ResourceStatus": event["ResourceStatus"],
            "ResourceStatusReason": event.get("ResourceStatusReason", ""), "ResourceType": event["ResourceType"],
            "StackName": event["StackName"], "ClientRequestToken": event.get("ClientRequestToken", "null"),
        }  # fmt: skip
        message = "".join(f"{key}='{value}'\n" for key, value in fields.items())
        for topic in record.get("NotificationARNs") or []:
            try:
                await self.app.call("sns", "Publish", {"TopicArn": topic, "Subject": "AWS CloudFormation Notification",
                                                       "Message": message}, region=topic.split(":")[3])
            except AwsError as exc:
                log.warning("stack notification to %s failed: %s", topic, exc)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine(self.app, self.stacks)
        return self._engine

    async def start(self) -> None:
        """End operations a previous run of nubes left IN_PROGRESS.

        With the embedded SQLite store this process is the only node, so nothing
        else can be working on them. (On PostgreSQL another node may be, so they
        are left alone.)"""
        if self.app.store.backend != "sqlite":
            return
        for record in await self.stacks.every_region():
            status = record["StackStatus"]
            if status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
                await self.stacks.stack_event(record, INTERRUPTED.get(status, "UPDATE_ROLLBACK_FAILED"),
                                              "nubes stopped while this operation was in progress")

    async def run(self, record: dict[str, Any], coro: Coroutine[Any, Any, None], failed_status: str) -> None:
        """Run a stack operation in the background; a crash still ends the operation.

        The call waits up to :data:`SETTLE_SECONDS` for the operation to finish:
        CloudFormation answers at once, but its clients poll with waiters whose
        first retry comes after 5–30 s, so an operation already complete at the
        first poll makes ``aws cloudformation deploy`` and ``sam deploy`` finish
        in the time the resources take, not in the waiters' delay."""

        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:
                log.exception("stack operation on %s crashed", record["StackName"])
                await self.stacks.stack_event(record, failed_status, f"Internal failure: {exc}")

        task = self.app.spawn(guarded(), name=f"cloudformation:{record['StackName']}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), SETTLE_SECONDS)

    def new_record(self, ctx: RequestContext, params: dict[str, Any], name: str, status: str) -> dict[str, Any]:
        """A fresh stack record (not yet stored)."""
        record: dict[str, Any] = {
            "StackId": stack_arn(ctx.region, ctx.account_id, name), "StackName": name,
            "CreationTime": time.time(), "StackStatus": status, "DisableRollback": bool(params.get("DisableRollback")),
            "NotificationARNs": list(params.get("NotificationARNs") or []),
            "Capabilities": list(params.get("Capabilities") or []), "Tags": list(params.get("Tags") or []),
            "EnableTerminationProtection": bool(params.get("EnableTerminationProtection")),
            "Resources": {}, "Outputs": [], "Parameters": [], "CallerAccessKey": ctx.access_key,
        }  # fmt: skip
        if params.get("OnFailure") == "DO_NOTHING":
            record["DisableRollback"] = True
        elif params.get("OnFailure") == "DELETE":
            record["OnFailure"] = "DELETE"
        for key in ("TimeoutInMinutes", "RoleARN", "StackPolicyBody", "ClientRequestToken"):
            if params.get(key) is not None:
                record[key] = params[key]
        return record

    @staticmethod
    def apply_plan(record: dict[str, Any], body: str, expanded: dict[str, Any], result: Plan) -> None:
        """Store the template and parameters a plan was made from in the record."""
        record["TemplateBody"] = body
        record["Template"] = expanded
        record["ParameterValues"] = dict(result.parameters.given)
        record["Parameters"] = describe_parameters(result.parameters, result.ssm_values)
        if "Description" in expanded:
            record["Description"] = expanded["Description"]
        else:
            record.pop("Description", None)

    async def fetch_s3(self, ctx: RequestContext, url: str) -> bytes:
        """The object a TemplateURL points at, read from nubes' own S3."""
        bucket, key = s3_location(url)
        try:
            out = await call_as(self.app, ctx.access_key, "s3", "GetObject", {"Bucket": bucket, "Key": key}, ctx.region)
        except AwsError as exc:
            raise validation(f"S3 error: {exc.message or exc.code}") from None
        body = out.get("Body", b"")
        if isinstance(body, str):
            return body.encode()
        if isinstance(body, bytes | bytearray):
            return bytes(body)
        if hasattr(body, "read"):
            data = body.read()
            return bytes(await data) if inspect.isawaitable(data) else bytes(data)
        if hasattr(body, "__aiter__"):
            return b"".join([bytes(chunk) async for chunk in body])
        raise validation("S3 error: the template object could not be read")

    async def template_body(self, ctx: RequestContext, params: dict[str, Any], previous: dict[str, Any] | None = None) -> str:
        """The template of a request: TemplateBody, TemplateURL or the previous one."""
        if params.get("UsePreviousTemplate"):
            if previous is None:
                raise validation("UsePreviousTemplate is only valid for an existing stack")
            body: str = previous["TemplateBody"]
            return body
        if params.get("TemplateBody"):
            body = str(params["TemplateBody"])
            if len(body.encode()) > MAX_BODY:
                raise validation(f"1 validation error detected: Value '{body[:20]}...' at 'templateBody' failed to satisfy "
                                 f"constraint: Member must have length less than or equal to {MAX_BODY}")
            return body
        if params.get("TemplateURL"):
            data = await self.fetch_s3(ctx, params["TemplateURL"])
            if len(data) > MAX_URL_BODY:
                raise validation(f"Template may not exceed {MAX_URL_BODY} bytes in size.")
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise validation("Template format error: the template is not UTF-8 text") from None
        raise validation("Either Template URL or Template Body must be specified.")

    async def ssm_value(self, ctx: RequestContext, name: str) -> str:
        """The value of an SSM parameter for an ``AWS::SSM::Parameter::Value`` parameter."""
        try:
            out = await call_as(self.app, ctx.access_key, "ssm", "GetParameter", {"Name": name}, ctx.region)
        except AwsError:
            raise validation(f"Unable to fetch parameters [{name}] from parameter store for this account.") from None
        value: str = out["Parameter"]["Value"]
        return value

    def stack_info(self, ctx: RequestContext, name: str, stack_id: str, params: dict[str, Any]) -> StackInfo:
        """The pseudo parameter values of a stack."""
        return StackInfo(name, stack_id, region=ctx.region, account_id=ctx.account_id,
                         notification_arns=list(params.get("NotificationARNs") or []))

    async def build_plan(self, ctx: RequestContext, body: str, params: dict[str, Any], stack: StackInfo,
                         previous: dict[str, Any] | None = None) -> tuple[dict[str, Any], Plan]:
        """Expand and validate a template against a request's parameters."""
        given, use_previous = given_parameters(params)

        async def fetch(url: str) -> bytes:
            return await self.fetch_s3(ctx, url)

        expanded = await expand_template(body, given, stack, fetch)
        result = await plan(
            expanded, given, stack,
            previous=(previous or {}).get("ParameterValues"), use_previous=use_previous,
            ssm=lambda name: self.ssm_value(ctx, name),
        )  # fmt: skip
        return expanded, result
