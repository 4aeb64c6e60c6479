"""The CloudFormation API: stacks, their resources, events, templates, exports
and stack policies. Change sets are in :mod:`.changesets`; the work of creating,
updating and deleting resources is done by :mod:`nubes.deploy.engine` in a
background task, so calls return at once with the stack IN_PROGRESS."""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireResponse
from nubes.deploy.prepare import (
    check_capabilities,
    check_functions,
    check_structure,
    required_capabilities,
    template_parameters,
)
from nubes.deploy.resources.custom import RESPONSES, response_topic
from nubes.deploy.sam import check_transforms, transforms
from nubes.deploy.stackpolicy import parse_policy
from nubes.deploy.stacks import validation
from nubes.deploy.template import parse_template
from nubes.services.base import HttpRequest, RequestContext
from nubes.services.cloudformation.changesets import ChangeSets
from nubes.services.cloudformation.common import (
    COMPLETE_STATES,
    check_stack_name,
    resource_view,
    stack_view,
)
from nubes.storage.keys import pack


class CloudFormationProvider(ChangeSets):
    """CloudFormation operations."""

    # -- stacks -----------------------------------------------------------------

    async def create_stack(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["StackName"]
        check_stack_name(name)
        if await self.stacks.find(ctx.region, name) is not None:
            raise AwsError("AlreadyExistsException", f"Stack [{name}] already exists", 400)
        record = self.new_record(ctx, params, name, "CREATE_IN_PROGRESS")
        body = await self.template_body(ctx, params)
        stack = self.stack_info(ctx, name, record["StackId"], params)
        expanded, result = await self.build_plan(ctx, body, params, stack)
        check_capabilities(required_capabilities(expanded, bool(transforms(parse_template(body)))), record["Capabilities"])
        self.apply_plan(record, body, expanded, result)
        await self.stacks.insert(record)
        await self.run(record, self.engine.create(record, result), "CREATE_FAILED")
        return {"StackId": record["StackId"]}

    async def update_stack(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.stacks.get(ctx.region, params["StackName"])
        if record["StackStatus"] not in COMPLETE_STATES:
            raise validation(f"Stack:{record['StackId']} is in {record['StackStatus']} state and can not be updated.")
        body = await self.template_body(ctx, params, record)
        stack = self.stack_info(ctx, record["StackName"], record["StackId"], params)
        expanded, result = await self.build_plan(ctx, body, params, stack, record)
        capabilities = list(params.get("Capabilities") or [])
        check_capabilities(required_capabilities(expanded, bool(transforms(parse_template(body)))), capabilities)
        tags = params.get("Tags")
        if (expanded == record["Template"] and result.parameters.given == record.get("ParameterValues")
                and (tags is None or tags == record.get("Tags"))):
            raise validation("No updates are to be performed.")
        record.pop("PendingRollback", None)  # a new update replaces a held one
        previous = copy.deepcopy(record)
        self.apply_plan(record, body, expanded, result)
        record["Capabilities"] = capabilities
        record["CallerAccessKey"] = ctx.access_key
        record["LastUpdatedTime"] = time.time()
        if tags is not None:
            record["Tags"] = tags
        if "DisableRollback" in params:
            record["DisableRollback"] = bool(params["DisableRollback"])
        if params.get("StackPolicyBody"):
            parse_policy(params["StackPolicyBody"])
            record["StackPolicyBody"] = params["StackPolicyBody"]
        if params.get("StackPolicyDuringUpdateBody"):
            parse_policy(params["StackPolicyDuringUpdateBody"])
            record["StackPolicyDuringUpdateBody"] = params["StackPolicyDuringUpdateBody"]
        else:
            record.pop("StackPolicyDuringUpdateBody", None)
        record["StackStatus"] = "UPDATE_IN_PROGRESS"
        await self.stacks.save(record, expect=previous["StackStatus"])
        await self.run(record, self.engine.update(record, result, previous), "UPDATE_ROLLBACK_FAILED")
        return {"StackId": record["StackId"]}

    async def delete_stack(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.stacks.find(ctx.region, params["StackName"])
        if record is None:
            return {}  # CloudFormation answers success for a stack that is not there
        if record.get("EnableTerminationProtection"):
            raise validation(f"Stack [{record['StackName']}] cannot be deleted while TerminationProtection is enabled")
        if record["StackStatus"] == "DELETE_IN_PROGRESS":
            return {}
        retain = list(params.get("RetainResources") or [])
        if retain and record["StackStatus"] != "DELETE_FAILED":
            raise validation(f"Invalid operation on stack [{record['StackId']}]. RetainResources can only be specified when the stack is in the DELETE_FAILED state")
        if record["StackStatus"].endswith("_IN_PROGRESS") and record["StackStatus"] != "REVIEW_IN_PROGRESS":
            raise validation(f"Stack [{record['StackName']}] cannot be deleted while in status {record['StackStatus']}")
        status = record["StackStatus"]
        record["RetainResources"] = retain
        record["CallerAccessKey"] = ctx.access_key
        record["StackStatus"] = "DELETE_IN_PROGRESS"
        await self.stacks.save(record, expect=status)
        for change_set in await self.stacks.change_sets(ctx.region, record["StackId"]):
            await self.stacks.delete_change_set(change_set["ChangeSetId"])
        await self.run(record, self.engine.delete(record), "DELETE_FAILED")
        return {}

    async def describe_stacks(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("StackName")
        if name:
            record = await self.stacks.find(ctx.region, name, deleted=True)
            if record is None:
                raise validation(f"Stack with id {name} does not exist")
            return {"Stacks": [stack_view(record)]}
        records = [r for r in await self.stacks.all(ctx.region) if r["StackStatus"] != "DELETE_COMPLETE"]
        return {"Stacks": [stack_view(r) for r in reversed(records)]}

    async def list_stacks(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        wanted = set(params.get("StackStatusFilter") or [])
        summaries = []
        for record in reversed(await self.stacks.all(ctx.region)):
            if wanted and record["StackStatus"] not in wanted:
                continue
            item = {k: record[k] for k in ("StackId", "StackName", "CreationTime", "StackStatus") if k in record}
            for key in ("LastUpdatedTime", "DeletionTime", "StackStatusReason"):
                if key in record:
                    item[key] = record[key]
            if "Description" in record:
                item["TemplateDescription"] = record["Description"]
            item["DriftInformation"] = {"StackDriftStatus": "NOT_CHECKED"}
            summaries.append(item)
        return {"StackSummaries": summaries}

    async def describe_stack_events(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.stacks.get(ctx.region, params["StackName"], deleted=True)
        return {"StackEvents": await self.stacks.events(record["StackId"])}

    async def _resources_of(self, ctx: RequestContext, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        record = await self.stacks.get(ctx.region, name, deleted=True)
        return record, list(record["Resources"].values())

    async def list_stack_resources(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record, resources = await self._resources_of(ctx, params["StackName"])
        return {"StackResourceSummaries": [resource_view(record, r, "summary") for r in resources]}

    async def describe_stack_resources(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("StackName"):
            record, resources = await self._resources_of(ctx, params["StackName"])
        elif params.get("PhysicalResourceId"):
            record, resources = await self._by_physical_id(ctx, params["PhysicalResourceId"])
        else:
            raise validation("Either StackName or PhysicalResourceId must be specified.")
        if params.get("LogicalResourceId"):
            resources = [r for r in resources if r["LogicalResourceId"] == params["LogicalResourceId"]]
        return {"StackResources": [resource_view(record, r, "resource") for r in resources]}

    async def _by_physical_id(self, ctx: RequestContext, physical_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        for record in await self.stacks.all(ctx.region):
            if record["StackStatus"] == "DELETE_COMPLETE":
                continue
            if any(r.get("PhysicalResourceId") == physical_id for r in record["Resources"].values()):
                return record, list(record["Resources"].values())
        raise validation(f"Stack for {physical_id} does not exist")

    async def describe_stack_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record, _ = await self._resources_of(ctx, params["StackName"])
        resource = record["Resources"].get(params["LogicalResourceId"])
        if resource is None:
            raise validation(f"Resource {params['LogicalResourceId']} does not exist for stack {params['StackName']}")
        return {"StackResourceDetail": resource_view(record, resource, "detail")}

    # -- templates --------------------------------------------------------------

    async def get_template(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("ChangeSetName"):
            change_set = await self.stacks.find_change_set(ctx.region, params["ChangeSetName"], params.get("StackName"))
            source: dict[str, Any] = change_set
        else:
            source = await self.stacks.get(ctx.region, params.get("StackName") or "", deleted=True)
        if params.get("TemplateStage") == "Processed":
            body = json.dumps(source["Template"], indent=2)
        else:
            body = source["TemplateBody"]
        return {"TemplateBody": body, "StagesAvailable": ["Original", "Processed"]}

    async def validate_template(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        body = await self.template_body(ctx, params)
        template = parse_template(body)
        check_transforms(template)
        declared = transforms(template)
        if not declared:
            check_structure(template)
            check_functions(template)
        out: dict[str, Any] = {"Parameters": template_parameters(template)}
        if "Description" in template:
            out["Description"] = template["Description"]
        needed = required_capabilities(template, bool(declared))
        if needed:
            out["Capabilities"] = needed
            out["CapabilitiesReason"] = "The following resource(s) require capabilities: " + ", ".join(
                f"[{r['Type']}]" for r in template["Resources"].values() if str(r.get("Type", "")).startswith("AWS::IAM::")
            ) if "CAPABILITY_AUTO_EXPAND" not in needed else "The template contains transforms"
        if declared:
            out["DeclaredTransforms"] = declared
        return out

    async def get_template_summary(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("StackName"):
            record = await self.stacks.get(ctx.region, params["StackName"])
            template, body = record["Template"], record["TemplateBody"]
        else:
            body = await self.template_body(ctx, params)
            template = parse_template(body)
        original = parse_template(body)
        declared = transforms(original)
        out: dict[str, Any] = {
            "Parameters": template_parameters(template),
            "ResourceTypes": sorted({str(r.get("Type")) for r in (template.get("Resources") or {}).values()}),
            "Version": str(template.get("AWSTemplateFormatVersion", "2010-09-09")),
        }
        if "Description" in template:
            out["Description"] = template["Description"]
        if "Metadata" in template:
            out["Metadata"] = json.dumps(template["Metadata"])
        needed = required_capabilities(template, bool(declared))
        if needed:
            out["Capabilities"] = needed
        if declared:
            out["DeclaredTransforms"] = declared
        return out

    # -- held and cancelled operations ----------------------------------------------

    async def rollback_stack(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.stacks.get(ctx.region, params["StackName"])
        if record["StackStatus"] not in ("CREATE_FAILED", "UPDATE_FAILED"):
            raise validation(f"Stack {record['StackName']} is in {record['StackStatus']} state and can not be rolled back.")
        record["CallerAccessKey"] = ctx.access_key
        await self.run(record, self.engine.rollback(record), "ROLLBACK_FAILED")
        return {"StackId": record["StackId"]}

    async def continue_update_rollback(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.stacks.get(ctx.region, params["StackName"])
        if record["StackStatus"] != "UPDATE_ROLLBACK_FAILED":
            raise validation(f"Stack {record['StackName']} is in {record['StackStatus']} state and can not continue rollback.")
        # The failed rollback already restored what it could; resources it could not
        # roll back are skipped, as ResourcesToSkip asks.
        for name in params.get("ResourcesToSkip") or list(record["Resources"]):
            resource = record["Resources"].get(name)
            if resource is not None and resource.get("ResourceStatus", "").endswith("FAILED"):
                resource["ResourceStatus"] = "UPDATE_COMPLETE"
        await self.stacks.stack_event(record, "UPDATE_ROLLBACK_COMPLETE")
        return {}

    async def cancel_update_stack(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.stacks.get(ctx.region, params["StackName"])
        if record["StackStatus"] != "UPDATE_IN_PROGRESS":
            raise validation(f"CancelUpdateStack cannot be called from current stack status {record['StackStatus']}")
        self.engine.cancelled.add(record["StackId"])
        return {}

    # -- custom resource responses -------------------------------------------------

    async def custom_resource_response(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """The ResponseURL of custom resource requests: store the document, wake the handler."""
        if request.method != "PUT":
            return WireResponse(405, {"allow": "PUT"}, b"")
        request_id = match.group("request_id")
        try:
            document = json.loads(request.body or b"{}")
        except ValueError:
            return WireResponse(400, {"content-type": "text/plain"}, b"the response is not JSON")
        if not isinstance(document, dict) or document.get("Status") not in ("SUCCESS", "FAILED"):
            return WireResponse(400, {"content-type": "text/plain"}, b"Status must be SUCCESS or FAILED")
        if document.get("RequestId", request_id) != request_id:
            return WireResponse(400, {"content-type": "text/plain"}, b"RequestId does not match the URL")
        raw = json.dumps(document).encode()
        await self.app.store.write(lambda txn: txn.put(RESPONSES, pack(request_id), raw))
        self.app.bus.wake(response_topic(request_id))
        return WireResponse(200, {"content-length": "0"}, b"")

    # -- exports, policies, protection ----------------------------------------------

    async def list_exports(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        exports = await self.stacks.exports(ctx.region)
        return {"Exports": [{"ExportingStackId": e["StackId"], "Name": e["Name"], "Value": e["Value"]} for e in exports.values()]}

    async def list_imports(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ExportName"]
        if name not in await self.stacks.exports(ctx.region):
            raise validation(f"Export '{name}' does not exist.")
        importers = [r["StackName"] for r in await self.stacks.all(ctx.region)
                     if r["StackStatus"] != "DELETE_COMPLETE" and name in (r.get("Imports") or [])]
        if not importers:
            raise validation(f"Export '{name}' is not imported by any stack.")
        return {"Imports": importers}

    async def set_stack_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.stacks.get(ctx.region, params["StackName"])
        if params.get("StackPolicyURL"):
            record["StackPolicyBody"] = (await self.fetch_s3(ctx, params["StackPolicyURL"])).decode()
        else:
            record["StackPolicyBody"] = params.get("StackPolicyBody", "")
        parse_policy(record["StackPolicyBody"])
        await self.stacks.save(record)
        return {}

    async def get_stack_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.stacks.get(ctx.region, params["StackName"])
        return {"StackPolicyBody": record["StackPolicyBody"]} if record.get("StackPolicyBody") else {}

    async def update_termination_protection(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.stacks.get(ctx.region, params["StackName"])
        record["EnableTerminationProtection"] = bool(params["EnableTerminationProtection"])
        await self.stacks.save(record)
        return {"StackId": record["StackId"]}
