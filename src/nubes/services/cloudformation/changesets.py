"""Change sets: CreateChangeSet (types CREATE and UPDATE, as ``sam deploy`` and
``aws cloudformation deploy`` use them), Describe/Execute/Delete/ListChangeSets.

A change set stores the expanded template and parameters; executing it re-plans
them against the stack as it is then and runs the engine.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.prepare import Plan, check_capabilities, required_capabilities
from nubes.deploy.resources import handler_for
from nubes.deploy.stacks import validation
from nubes.services.base import RequestContext
from nubes.services.cloudformation.common import (
    COMPLETE_STATES,
    CloudFormationBase,
    check_stack_name,
)

NO_CHANGES = "The submitted information didn't contain changes. Submit different information to create a change set."


def _referenced_parameters_changed(definition: Any, old: dict[str, str], new: dict[str, str]) -> bool:
    from nubes.deploy.graph import references

    return any(old.get(name) != new.get(name) for name in references(definition) if name in old or name in new)


def diff(record: dict[str, Any] | None, result: Plan) -> list[dict[str, Any]]:
    """The Changes list of a change set: Add, Modify (with Replacement) and Remove."""
    old_resources: dict[str, Any] = (record or {}).get("Resources") or {}
    old_values: dict[str, str] = (record or {}).get("ParameterValues") or {}
    new_values = result.parameters.given
    changes: list[dict[str, Any]] = []
    for name in result.active:
        definition = result.template["Resources"][name]
        old = old_resources.get(name)
        change: dict[str, Any] = {"LogicalResourceId": name, "ResourceType": definition["Type"]}
        if old is None or not old.get("PhysicalResourceId"):
            change["Action"] = "Add"
        else:
            before = old.get("Definition") or {}
            if before == definition and not _referenced_parameters_changed(definition, old_values, new_values):
                continue
            change.update(Action="Modify", PhysicalResourceId=old["PhysicalResourceId"])
            change["Replacement"] = _replacement(definition, before)
            change["Scope"] = ["Properties"] if before.get("Properties") != definition.get("Properties") else []
            change["Details"] = []
        changes.append({"Type": "Resource", "ResourceChange": change})
    for name, old in old_resources.items():
        if name not in result.active and old.get("PhysicalResourceId"):
            changes.append({"Type": "Resource", "ResourceChange": {
                "Action": "Remove", "LogicalResourceId": name, "PhysicalResourceId": old["PhysicalResourceId"],
                "ResourceType": old.get("ResourceType", ""), "Scope": [], "Details": [],
            }})  # fmt: skip
    return changes


def _replacement(definition: dict[str, Any], before: dict[str, Any]) -> str:
    if definition.get("Type") != before.get("Type"):
        return "True"
    handler = handler_for(definition["Type"])
    if handler is None:
        return "Conditional"
    new_props, old_props = definition.get("Properties") or {}, before.get("Properties") or {}
    if handler.needs_replacement(new_props, old_props):
        return "True"
    return "False"


class ChangeSets(CloudFormationBase):
    """The change set operations."""

    async def create_change_set(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name, change_set_name = params["StackName"], params["ChangeSetName"]
        kind = params.get("ChangeSetType") or "UPDATE"
        if kind == "IMPORT":
            raise AwsError("NotImplemented", "ChangeSetType IMPORT is not implemented by nubes", 501)
        record = await self.stacks.find(ctx.region, name)
        if kind == "CREATE":
            check_stack_name(name)
            if record is not None and not (record["StackStatus"] == "REVIEW_IN_PROGRESS" and not record["Resources"]):
                raise AwsError("AlreadyExistsException", f"Stack [{name}] already exists and cannot be created again with the changeSet [{change_set_name}].", 400)
        elif record is None or record["StackStatus"] == "REVIEW_IN_PROGRESS":
            raise validation(f"Stack [{name}] does not exist")
        elif record["StackStatus"] not in COMPLETE_STATES:
            raise validation(f"Stack:{record['StackId']} is in {record['StackStatus']} state and can not be updated.")
        existing = None if record is None else [c for c in await self.stacks.change_sets(ctx.region, record["StackId"]) if c["ChangeSetName"] == change_set_name]
        if existing:
            raise AwsError("AlreadyExistsException", f"ChangeSet {change_set_name} already exists", 400)
        body = await self.template_body(ctx, params, record if kind == "UPDATE" else None)
        stack_id = record["StackId"] if record else self.new_record(ctx, params, name, "REVIEW_IN_PROGRESS")["StackId"]
        stack = self.stack_info(ctx, name, stack_id, params)
        expanded, result = await self.build_plan(ctx, body, params, stack, record if kind == "UPDATE" else None)
        if record is None:
            record = self.new_record(ctx, params, name, "REVIEW_IN_PROGRESS")
            record["StackId"] = stack_id
            await self.stacks.insert(record)
            await self.stacks.add_event(record, name, "REVIEW_IN_PROGRESS", physical_id=stack_id,
                                        resource_type="AWS::CloudFormation::Stack", reason="User Initiated")
        change_set_id = f"arn:aws:cloudformation:{ctx.region}:{ctx.account_id}:changeSet/{change_set_name}/{uuid.uuid4()}"
        changes = diff(record if kind == "UPDATE" else None, result)
        unchanged_tags = params.get("Tags") is None or params.get("Tags") == record.get("Tags")
        no_change = kind == "UPDATE" and not changes and result.parameters.given == record.get("ParameterValues") and unchanged_tags and expanded.get("Outputs") == record["Template"].get("Outputs")
        change_set: dict[str, Any] = {
            "ChangeSetId": change_set_id, "ChangeSetName": change_set_name, "StackId": record["StackId"],
            "StackName": name, "CreationTime": time.time(), "ChangeSetType": kind,
            "ExecutionStatus": "UNAVAILABLE" if no_change else "AVAILABLE",
            "Status": "FAILED" if no_change else "CREATE_COMPLETE",
            "Parameters": self._parameters_view(result),
            "Capabilities": list(params.get("Capabilities") or []), "Tags": list(params.get("Tags") or []),
            "NotificationARNs": list(params.get("NotificationARNs") or []), "Changes": changes,
            "TemplateBody": body, "Template": expanded, "Request": _request_copy(params),
            "IncludeNestedStacks": False,
        }  # fmt: skip
        if no_change:
            change_set["StatusReason"] = NO_CHANGES
        if params.get("Description"):
            change_set["Description"] = params["Description"]
        await self.stacks.put_change_set(change_set)
        return {"Id": change_set_id, "StackId": record["StackId"]}

    @staticmethod
    def _parameters_view(result: Plan) -> list[dict[str, Any]]:
        from nubes.deploy.params import describe_parameters

        return describe_parameters(result.parameters, result.ssm_values)

    async def describe_change_set(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        change_set = await self.stacks.find_change_set(ctx.region, params["ChangeSetName"], params.get("StackName"))
        return {k: v for k, v in change_set.items() if k not in ("TemplateBody", "Template", "Request", "ChangeSetType")}

    async def list_change_sets(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.stacks.get(ctx.region, params["StackName"])
        keys = ("StackId", "StackName", "ChangeSetId", "ChangeSetName", "ExecutionStatus", "Status",
                "StatusReason", "CreationTime", "Description", "IncludeNestedStacks")
        return {"Summaries": [{k: c[k] for k in keys if k in c} for c in await self.stacks.change_sets(ctx.region, record["StackId"])]}

    async def delete_change_set(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        change_set = await self.stacks.find_change_set(ctx.region, params["ChangeSetName"], params.get("StackName"))
        if change_set["ExecutionStatus"] in ("EXECUTE_IN_PROGRESS",):
            raise AwsError("InvalidChangeSetStatus", f"Cannot delete ChangeSet [{change_set['ChangeSetId']}] while it is in EXECUTE_IN_PROGRESS", 400)
        await self.stacks.delete_change_set(change_set["ChangeSetId"])
        return {}

    async def execute_change_set(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        change_set = await self.stacks.find_change_set(ctx.region, params["ChangeSetName"], params.get("StackName"))
        if change_set["ExecutionStatus"] != "AVAILABLE":
            raise AwsError("InvalidChangeSetStatus", f"ChangeSet [{change_set['ChangeSetId']}] cannot be executed in its current execution status of [{change_set['ExecutionStatus']}]", 400)
        record = await self.stacks.get(ctx.region, change_set["StackId"])
        request = dict(change_set["Request"])
        stack = self.stack_info(ctx, record["StackName"], record["StackId"], request)
        creating = record["StackStatus"] == "REVIEW_IN_PROGRESS"
        if not creating and record["StackStatus"] not in COMPLETE_STATES:
            raise validation(f"Stack:{record['StackId']} is in {record['StackStatus']} state and can not be updated.")
        expanded, result = await self.build_plan(ctx, change_set["TemplateBody"], request, stack, None if creating else record)
        check_capabilities(required_capabilities(expanded, False), change_set["Capabilities"])
        record.pop("PendingRollback", None)  # a new update replaces a held one
        previous = copy.deepcopy(record)
        self.apply_plan(record, change_set["TemplateBody"], expanded, result)
        record["Capabilities"] = change_set["Capabilities"]
        record["CallerAccessKey"] = ctx.access_key
        record["ChangeSetId"] = change_set["ChangeSetId"]
        if change_set["Tags"]:
            record["Tags"] = change_set["Tags"]
        if "DisableRollback" in params:
            record["DisableRollback"] = bool(params["DisableRollback"])
        if creating:
            record["StackStatus"] = "CREATE_IN_PROGRESS"
        else:
            record["StackStatus"] = "UPDATE_IN_PROGRESS"
            record["LastUpdatedTime"] = time.time()
        await self.stacks.save(record, expect=previous["StackStatus"])
        for other in await self.stacks.change_sets(ctx.region, record["StackId"]):
            if other["ChangeSetId"] != change_set["ChangeSetId"]:
                await self.stacks.delete_change_set(other["ChangeSetId"])
        change_set["ExecutionStatus"] = "EXECUTE_COMPLETE"
        await self.stacks.put_change_set(change_set)
        if creating:
            await self.run(record, self.engine.create(record, result), "CREATE_FAILED")
        else:
            await self.run(record, self.engine.update(record, result, previous), "UPDATE_ROLLBACK_FAILED")
        return {}


def _request_copy(params: dict[str, Any]) -> dict[str, Any]:
    """What execution needs of the CreateChangeSet request (the template is stored apart)."""
    keep = ("Parameters", "NotificationARNs", "Capabilities", "Tags", "RoleARN")
    return {k: params[k] for k in keep if params.get(k) is not None}

