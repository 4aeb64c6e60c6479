"""Running stack operations: create, update and delete resources in dependency
order (independent resources concurrently), roll back on failure, record every
step as a stack event.

The provider validates and stores the stack, then starts one of
:meth:`Engine.create`, :meth:`Engine.update` or :meth:`Engine.delete` with
``app.spawn``; the stack record is saved after every resource transition so
DescribeStacks and DescribeStackEvents show progress.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nubes.aws.errors import AwsError
from nubes.deploy import graph
from nubes.deploy.intrinsics import Evaluator
from nubes.deploy.prepare import Plan
from nubes.deploy.resources import handler_for
from nubes.deploy.resources.base import HandlerContext, ResourceHandler
from nubes.deploy.stacks import StackStore, validation
from nubes.deploy.template import template_error

if TYPE_CHECKING:
    from nubes.app import App

log = logging.getLogger(__name__)


class ResourceFailed(Exception):
    """A resource operation failed; ``reason`` goes into the stack events."""

    def __init__(self, logical_id: str, reason: str) -> None:
        super().__init__(reason)
        self.logical_id = logical_id
        self.reason = reason


def failure_reason(exc: BaseException) -> str:
    """How CloudFormation words a handler failure."""
    if isinstance(exc, AwsError):
        if exc.code in ("ValidationError", "UnsupportedResourceType", "CustomResourceFailed", "EmbeddedStackFailed"):
            return exc.message
        code = "AlreadyExists" if "AlreadyExist" in exc.code or "InUse" in exc.code else (
            "NotFound" if "NotFound" in exc.code else (
                "InvalidRequest" if "Validation" in exc.code or "Invalid" in exc.code else "GeneralServiceException"))
        return (f'Resource handler returned message: "{exc.message or exc.code}" '
                f"(RequestToken: {uuid.uuid4()}, HandlerErrorCode: {code})")
    return f"Internal failure: {type(exc).__name__}: {exc}"


class StackResolver:
    """Answers ``Ref``/``Fn::GetAtt``/``Fn::ImportValue`` from the stack record."""

    def __init__(self, record: dict[str, Any], exports: dict[str, dict[str, Any]]) -> None:
        self.record = record
        self.exports = exports
        self.imported: set[str] = set()

    def ref(self, logical_id: str) -> Any:
        resource = self.record["Resources"].get(logical_id)
        if resource is None or not resource.get("PhysicalResourceId"):
            raise template_error(f"Template format error: Unresolved resource dependencies [{logical_id}] in the Resources block of the template")
        return resource.get("Ref", resource["PhysicalResourceId"])

    def get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self.record["Resources"].get(logical_id)
        if resource is None or not resource.get("PhysicalResourceId"):
            raise template_error(f"Template error: instance of Fn::GetAtt references undefined resource {logical_id}")
        attributes = resource.get("Attributes") or {}
        if attribute not in attributes:
            raise template_error(f"Template error: resource {logical_id} does not support attribute type {attribute} in Fn::GetAtt")
        return attributes[attribute]

    def import_value(self, name: str) -> Any:
        export = self.exports.get(name)
        if export is None:
            raise validation(f"No export named {name} found.")
        self.imported.add(name)
        return export["Value"]


def _now() -> float:
    return time.time()


class Engine:
    """Executes stack operations for one app."""

    def __init__(self, app: App, stacks: StackStore) -> None:
        self.app = app
        self.stacks = stacks
        self._lock = asyncio.Lock()
        #: stacks whose running update was cancelled (CancelUpdateStack)
        self.cancelled: set[str] = set()

    def _context(self, record: dict[str, Any], logical_id: str) -> HandlerContext:
        region, account = record["StackId"].split(":")[3:5]
        resource_type = (record["Resources"].get(logical_id) or {}).get("ResourceType", "")
        return HandlerContext(self.app, region, account, record["StackName"], record["StackId"], logical_id, resource_type,
                              record.get("CallerAccessKey"))

    async def _save(self, record: dict[str, Any]) -> None:
        async with self._lock:
            await self.stacks.save(record)

    async def _resource_event(self, record: dict[str, Any], logical_id: str, status: str, reason: str | None = None,
                              properties: Any = None) -> None:
        resource = record["Resources"].setdefault(logical_id, {"LogicalResourceId": logical_id})
        resource["ResourceStatus"] = status
        resource["Timestamp"] = _now()
        if reason:
            resource["ResourceStatusReason"] = reason
        else:
            resource.pop("ResourceStatusReason", None)
        await self._save(record)
        await self.stacks.add_event(record, logical_id, status, physical_id=resource.get("PhysicalResourceId", ""),
                                    resource_type=resource.get("ResourceType", ""), reason=reason, properties=properties)

    # -- scheduling -------------------------------------------------------------

    async def _run_ordered(self, names: list[str], deps: dict[str, set[str]],
                           action: Callable[[str], Awaitable[None]]) -> ResourceFailed | None:
        """Run ``action`` for each name once its deps (within ``names``) are done,
        concurrently where independent; after a failure start nothing new."""
        pending = set(names)
        done: set[str] = set()
        running: dict[asyncio.Task[None], str] = {}
        failure: ResourceFailed | None = None
        while pending or running:
            if failure is None:
                for name in sorted(pending):
                    if not (deps.get(name, set()) & set(names)) - done:
                        pending.discard(name)
                        running[asyncio.ensure_future(action(name))] = name
            if not running:
                break
            finished, _ = await asyncio.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                name = running.pop(task)
                exc = task.exception()
                if exc is None:
                    done.add(name)
                elif failure is None:
                    failure = exc if isinstance(exc, ResourceFailed) else ResourceFailed(name, failure_reason(exc))
                    if not isinstance(exc, ResourceFailed | AwsError):
                        log.error("resource %s failed", name, exc_info=exc)
        return failure

    # -- single resources -------------------------------------------------------

    def _handler(self, record: dict[str, Any], logical_id: str) -> ResourceHandler:
        type_name = record["Resources"][logical_id]["ResourceType"]
        handler = handler_for(type_name)
        if handler is None:
            raise AwsError("UnsupportedResourceType", f"Resource type {type_name} is not supported by nubes")
        return handler

    async def _create_one(self, record: dict[str, Any], plan: Plan, evaluator: Evaluator, logical_id: str) -> None:
        definition = plan.template["Resources"][logical_id]
        resource = {"LogicalResourceId": logical_id, "ResourceType": definition["Type"]}
        record["Resources"][logical_id] = resource
        await self._resource_event(record, logical_id, "CREATE_IN_PROGRESS")
        try:
            props = evaluator.evaluate(definition.get("Properties") or {})
            handler = self._handler(record, logical_id)
            outcome = await handler.create(self._context(record, logical_id), props)
        except Exception as exc:
            reason = failure_reason(exc)
            await self._resource_event(record, logical_id, "CREATE_FAILED", reason)
            raise ResourceFailed(logical_id, reason) from exc
        resource.update(PhysicalResourceId=outcome.physical_id, Attributes=outcome.attributes, Properties=props)
        if outcome.ref is not None:
            resource["Ref"] = outcome.ref
        resource["DeletionPolicy"] = definition.get("DeletionPolicy", "Delete")
        resource["Definition"] = definition
        await self._resource_event(record, logical_id, "CREATE_COMPLETE")

    async def _delete_one(self, record: dict[str, Any], logical_id: str, resource: dict[str, Any], *,
                          honour_retain: bool = True) -> None:
        """Delete one resource (or skip it for DeletionPolicy Retain)."""
        if not resource.get("PhysicalResourceId"):
            record["Resources"].pop(logical_id, None)
            return
        if honour_retain and resource.get("DeletionPolicy") == "Retain":
            await self._log_resource(record, resource, "DELETE_SKIPPED")
            return
        await self._log_resource(record, resource, "DELETE_IN_PROGRESS")
        try:
            handler = handler_for(resource["ResourceType"])
            if handler is not None:
                await handler.delete(self._context(record, logical_id), resource["PhysicalResourceId"], resource.get("Properties") or {})
        except Exception as exc:
            reason = failure_reason(exc)
            await self._log_resource(record, resource, "DELETE_FAILED", reason)
            raise ResourceFailed(logical_id, reason) from exc
        await self._log_resource(record, resource, "DELETE_COMPLETE")

    async def _log_resource(self, record: dict[str, Any], resource: dict[str, Any], status: str, reason: str | None = None) -> None:
        """An event for a resource that may no longer be in ``record["Resources"]``."""
        resource["ResourceStatus"] = status
        resource["Timestamp"] = _now()
        await self._save(record)
        await self.stacks.add_event(record, resource["LogicalResourceId"], status, physical_id=resource.get("PhysicalResourceId", ""),
                                    resource_type=resource.get("ResourceType", ""), reason=reason)

    async def _delete_all(self, record: dict[str, Any], resources: dict[str, dict[str, Any]], deps: dict[str, set[str]],
                          *, honour_retain: bool = True) -> ResourceFailed | None:
        """Delete ``resources`` dependents-first; returns the first failure."""
        names = [n for n in resources if resources[n].get("PhysicalResourceId") or n in record["Resources"]]
        reverse = graph.dependents({n: deps.get(n, set()) & set(names) for n in names})

        async def action(name: str) -> None:
            await self._delete_one(record, name, resources[name], honour_retain=honour_retain)

        return await self._run_ordered(names, reverse, action)

    # -- outputs ----------------------------------------------------------------

    async def _outputs(self, record: dict[str, Any], plan: Plan, evaluator: Evaluator) -> None:
        outputs: list[dict[str, Any]] = []
        exports: dict[str, Any] = {}
        for key, output in (plan.template.get("Outputs") or {}).items():
            if "Condition" in output and not evaluator.condition(output["Condition"]):
                continue
            item: dict[str, Any] = {"OutputKey": key, "OutputValue": _output_text(evaluator.evaluate(output["Value"]))}
            if "Description" in output:
                item["Description"] = output["Description"]
            if "Export" in output:
                name = evaluator.evaluate(output["Export"].get("Name"))
                item["ExportName"] = name
                exports[str(name)] = item["OutputValue"]
            outputs.append(item)
        await self.stacks.set_exports(record, exports)
        record["Outputs"] = outputs

    # -- operations -------------------------------------------------------------

    async def create(self, record: dict[str, Any], plan: Plan) -> None:
        """Create every resource, then the outputs; roll back on failure."""
        await self.stacks.stack_event(record, "CREATE_IN_PROGRESS", "User Initiated")
        resolver = StackResolver(record, await self.stacks.exports(plan.stack.region))
        evaluator = plan.evaluator(resolver)
        record["Dependencies"] = {k: sorted(v) for k, v in plan.deps.items()}

        async def action(name: str) -> None:
            await self._create_one(record, plan, evaluator, name)

        failure = await self._run_ordered(plan.active, plan.deps, action)
        if failure is None:
            try:
                await self._outputs(record, plan, evaluator)
                record["Imports"] = sorted(resolver.imported)
                await self.stacks.stack_event(record, "CREATE_COMPLETE")
                return
            except Exception as exc:
                failure = ResourceFailed(record["StackName"], failure_reason(exc))
        reason = stack_reason(record, failure, "create")
        if record.get("DisableRollback"):
            await self.stacks.stack_event(record, "CREATE_FAILED", reason)
            return
        await self.stacks.stack_event(record, "ROLLBACK_IN_PROGRESS", reason + ("Rollback requested by user." if reason.endswith(". ") else ""))
        failed = await self._delete_all(record, dict(record["Resources"]), plan.deps, honour_retain=False)
        record["Outputs"] = []
        await self.stacks.set_exports(record, {})
        if failed is not None:
            await self.stacks.stack_event(record, "ROLLBACK_FAILED", f"The following resource(s) failed to delete: [{failed.logical_id}]. ")
        else:
            await self.stacks.stack_event(record, "ROLLBACK_COMPLETE")
            if record.get("OnFailure") == "DELETE":
                await self.delete(record)

    async def delete(self, record: dict[str, Any]) -> None:
        """Delete every resource (Retain ones are skipped), dependents first."""
        await self.stacks.stack_event(record, "DELETE_IN_PROGRESS", "User Initiated")
        try:
            await self.stacks.set_exports(record, {})
        except AwsError as exc:
            await self.stacks.stack_event(record, "DELETE_FAILED", exc.message)
            return
        deps = {k: set(v) for k, v in (record.get("Dependencies") or {}).items()}
        retain = set(record.get("RetainResources") or [])
        for name in retain:
            if name in record["Resources"]:
                record["Resources"][name]["DeletionPolicy"] = "Retain"
        failed = await self._delete_all(record, dict(record["Resources"]), deps)
        if failed is not None:
            await self.stacks.stack_event(record, "DELETE_FAILED", f"The following resource(s) failed to delete: [{failed.logical_id}]. ")
            return
        await self.stacks.set_exports(record, {})
        record["DeletionTime"] = _now()
        await self.stacks.stack_event(record, "DELETE_COMPLETE")

    async def update(self, record: dict[str, Any], plan: Plan, previous: dict[str, Any]) -> None:
        """Bring the stack from ``previous`` (a copy of the record) to ``plan``."""
        from nubes.deploy.updates import Updater

        try:
            await Updater(self, record, plan, previous).run()
        finally:
            self.cancelled.discard(record["StackId"])

    async def rollback(self, record: dict[str, Any]) -> None:
        """RollbackStack: undo a CREATE_FAILED or UPDATE_FAILED stack kept by DisableRollback."""
        from nubes.deploy.updates import UpdateRollback

        if record["StackStatus"] == "UPDATE_FAILED":
            await UpdateRollback.resume(self, record)
            return
        await self.stacks.stack_event(record, "ROLLBACK_IN_PROGRESS", "User Initiated")
        deps = {k: set(v) for k, v in (record.get("Dependencies") or {}).items()}
        failed = await self._delete_all(record, dict(record["Resources"]), deps, honour_retain=False)
        record["Outputs"] = []
        await self.stacks.set_exports(record, {})
        if failed is not None:
            await self.stacks.stack_event(record, "ROLLBACK_FAILED", f"The following resource(s) failed to delete: [{failed.logical_id}]. ")
        else:
            await self.stacks.stack_event(record, "ROLLBACK_COMPLETE")


def stack_reason(record: dict[str, Any], failure: ResourceFailed, verb: str) -> str:
    """The stack's status reason: the failing resources, or the stack-level problem
    itself (outputs, exports) when no resource failed."""
    if failure.logical_id == record["StackName"]:
        return failure.reason
    return f"The following resource(s) failed to {verb}: [{failure.logical_id}]. "


def _output_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
