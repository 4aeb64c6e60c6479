"""Stack updates: add, modify in place, replace or remove each resource as
CloudFormation would, clean up replaced and removed resources afterwards, and
roll everything back to the previous template when a resource fails.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nubes.deploy import graph
from nubes.deploy.engine import ResourceFailed, StackResolver, failure_reason, stack_reason
from nubes.deploy.stackpolicy import denial

if TYPE_CHECKING:
    from nubes.deploy.engine import Engine
    from nubes.deploy.intrinsics import Evaluator
    from nubes.deploy.prepare import Plan


@dataclass
class Change:
    """What happened to one resource, so it can be undone."""

    kind: str  # "add", "modify", "replace"
    old: dict[str, Any] | None  # the previous resource record


class Updater:
    """One UpdateStack (or ExecuteChangeSet of an existing stack)."""

    def __init__(self, engine: Engine, record: dict[str, Any], plan: Plan, previous: dict[str, Any]) -> None:
        self.engine = engine
        self.stacks = engine.stacks
        self.record = record
        self.plan = plan
        self.previous = previous
        self.changes: dict[str, Change] = {}
        #: old physical resources to delete at cleanup (replaced ones)
        self.replaced: dict[str, dict[str, Any]] = {}

    async def _hold(self, failure: ResourceFailed) -> None:
        """DisableRollback: stop in UPDATE_FAILED, keeping what RollbackStack needs."""
        self.record["PendingRollback"] = {
            "Previous": {k: v for k, v in self.previous.items() if k != "PendingRollback"},
            "Changes": {n: {"kind": c.kind, "old": c.old} for n, c in self.changes.items()},
            "Deps": {n: sorted(d) for n, d in self.plan.deps.items()},
        }
        added = self.changes.get(failure.logical_id) and self.changes[failure.logical_id].kind == "add"
        await self.stacks.stack_event(self.record, "UPDATE_FAILED", stack_reason(self.record, failure, "create" if added else "update"))

    async def run(self) -> None:
        """Apply the plan; clean up on success, roll back on failure."""
        await self.stacks.stack_event(self.record, "UPDATE_IN_PROGRESS", "User Initiated")
        resolver = StackResolver(self.record, await self.stacks.exports(self.plan.stack.region))
        evaluator = self.plan.evaluator(resolver)

        async def action(name: str) -> None:
            if self.record["StackId"] in self.engine.cancelled:
                raise ResourceFailed(name, "Resource update cancelled")
            await self._apply(name, evaluator)

        failure = await self._check_removals()
        if failure is None:
            failure = await self.engine._run_ordered(self.plan.active, self.plan.deps, action)
        if failure is None:
            try:
                await self.engine._outputs(self.record, self.plan, evaluator)
                self.record["Imports"] = sorted(resolver.imported)
            except Exception as exc:
                failure = ResourceFailed(self.record["StackName"], failure_reason(exc))
        if failure is not None:
            if self.record.get("DisableRollback"):
                await self._hold(failure)
            else:
                await UpdateRollback(self.engine, self.record, self.previous, self.changes, self.plan.deps).run(failure)
            return
        self.record["Dependencies"] = {k: sorted(v) for k, v in self.plan.deps.items()}
        await self.stacks.stack_event(self.record, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
        await self._cleanup()
        await self.stacks.stack_event(self.record, "UPDATE_COMPLETE")

    async def _check_removals(self) -> ResourceFailed | None:
        """Removing resources is ``Update:Delete``: a stack policy may forbid it."""
        for name, resource in self.record["Resources"].items():
            if name not in self.plan.active and resource.get("PhysicalResourceId"):
                reason = denial(self._policy(), "Update:Delete", name, resource.get("ResourceType", ""))
                if reason is not None:
                    await self.engine._resource_event(self.record, name, "UPDATE_FAILED", reason)
                    return ResourceFailed(name, reason)
        return None

    async def _apply(self, name: str, evaluator: Evaluator) -> None:
        definition = self.plan.template["Resources"][name]
        old = self.record["Resources"].get(name)
        if old is None or not old.get("PhysicalResourceId"):
            self.changes[name] = Change("add", None)
            await self.engine._create_one(self.record, self.plan, evaluator, name)
            return
        try:
            props = evaluator.evaluate(definition.get("Properties") or {})
        except Exception as exc:
            reason = failure_reason(exc)
            await self.engine._resource_event(self.record, name, "UPDATE_FAILED", reason)
            raise ResourceFailed(name, reason) from exc
        same_type = old["ResourceType"] == definition["Type"]
        if same_type and props == old.get("Properties") and _attributes(definition) == _attributes(old.get("Definition") or {}):
            return
        if same_type and props == old.get("Properties"):
            # Only DeletionPolicy/Metadata/... changed: record it, nothing to call.
            old["Definition"] = definition
            old["DeletionPolicy"] = definition.get("DeletionPolicy", "Delete")
            return
        if not same_type:
            await self._check_policy(name, "Update:Replace", old["ResourceType"])
            await self._replace(name, old, evaluator)
            return
        handler = self.engine._handler(self.record, name)
        replacing = handler.needs_replacement(props, old.get("Properties") or {})
        await self._check_policy(name, "Update:Replace" if replacing else "Update:Modify", definition["Type"])
        if replacing:
            custom = handler.name_property
            if custom and props.get(custom) and props.get(custom) == (old.get("Properties") or {}).get(custom):
                reason = (f"CloudFormation cannot update a stack when a custom-named resource requires replacing. "
                          f"Rename {props[custom]} and update the stack again.")
                await self.engine._resource_event(self.record, name, "UPDATE_FAILED", reason)
                raise ResourceFailed(name, reason)
            await self._replace(name, old, evaluator)
            return
        self.changes[name] = Change("modify", copy.deepcopy(old))
        await self.engine._resource_event(self.record, name, "UPDATE_IN_PROGRESS")
        try:
            outcome = await handler.update(self.engine._context(self.record, name), old["PhysicalResourceId"], props, old.get("Properties") or {})
        except Exception as exc:
            reason = failure_reason(exc)
            await self.engine._resource_event(self.record, name, "UPDATE_FAILED", reason)
            raise ResourceFailed(name, reason) from exc
        old.update(PhysicalResourceId=outcome.physical_id, Attributes=outcome.attributes, Properties=props, Definition=definition)
        old["DeletionPolicy"] = definition.get("DeletionPolicy", "Delete")
        if outcome.ref is not None:
            old["Ref"] = outcome.ref
        await self.engine._resource_event(self.record, name, "UPDATE_COMPLETE")

    def _policy(self) -> str | None:
        body: str | None = self.record.get("StackPolicyDuringUpdateBody") or self.previous.get("StackPolicyBody")
        return body

    async def _check_policy(self, name: str, action: str, resource_type: str) -> None:
        reason = denial(self._policy(), action, name, resource_type)
        if reason is not None:
            await self.engine._resource_event(self.record, name, "UPDATE_FAILED", reason)
            raise ResourceFailed(name, reason)

    async def _replace(self, name: str, old: dict[str, Any], evaluator: Evaluator) -> None:
        self.changes[name] = Change("replace", copy.deepcopy(old))
        await self.engine._resource_event(
            self.record, name, "UPDATE_IN_PROGRESS",
            "Requested update requires the creation of a new physical resource; hence creating one.",
        )
        await self.engine._create_one(self.record, self.plan, evaluator, name)
        self.replaced[name] = copy.deepcopy(old)

    async def _cleanup(self) -> None:
        """Delete replaced physical resources and resources no longer in the template."""
        old_deps = {k: set(v) for k, v in (self.previous.get("Dependencies") or {}).items()}
        removed = {n: r for n, r in self.record["Resources"].items() if n not in self.plan.active}
        for name in removed:
            self.record["Resources"].pop(name, None)
        # UpdateReplacePolicy: Retain keeps the replaced physical resource.
        replaced = {n: r for n, r in self.replaced.items()
                    if (r.get("Definition") or {}).get("UpdateReplacePolicy") != "Retain"}
        targets = {**{f"{n}#old": r for n, r in replaced.items()}, **removed}
        deps = {n: {d for d in old_deps.get(n.split("#")[0], set()) if d in targets} for n in targets}

        async def action(name: str) -> None:
            resource = targets[name]
            try:
                await self.engine._delete_one(self.record, resource["LogicalResourceId"], resource,
                                              honour_retain=not name.endswith("#old"))
            except ResourceFailed:
                pass  # CloudFormation leaves a failed cleanup behind and completes the update

        await self.engine._run_ordered(list(targets), graph.dependents(deps), action)

class UpdateRollback:
    """Undo the changes of a failed update (at once, or later by RollbackStack)."""

    def __init__(self, engine: Engine, record: dict[str, Any], previous: dict[str, Any],
                 changes: dict[str, Change], deps: dict[str, set[str]]) -> None:
        self.engine = engine
        self.stacks = engine.stacks
        self.record = record
        self.previous = previous
        self.changes = changes
        self.deps = deps

    @classmethod
    async def resume(cls, engine: Engine, record: dict[str, Any]) -> None:
        """RollbackStack of an UPDATE_FAILED stack: undo what the held update changed."""
        pending = record.pop("PendingRollback", None) or {}
        changes = {n: Change(c["kind"], c["old"]) for n, c in (pending.get("Changes") or {}).items()}
        deps = {n: set(d) for n, d in (pending.get("Deps") or {}).items()}
        await cls(engine, record, pending.get("Previous") or {}, changes, deps).run(None)

    async def run(self, failure: ResourceFailed | None) -> None:
        """Undo every change in reverse order, restoring the previous template."""
        reason = "User Initiated"
        if failure is not None:
            added = self.changes.get(failure.logical_id) and self.changes[failure.logical_id].kind == "add"
            reason = stack_reason(self.record, failure, "create" if added else "update")
        await self.stacks.stack_event(self.record, "UPDATE_ROLLBACK_IN_PROGRESS", reason)
        failed: list[str] = []
        deps = {n: set(d) & set(self.changes) for n, d in self.deps.items() if n in self.changes}

        async def action(name: str) -> None:
            try:
                await self._undo(name)
            except ResourceFailed:
                failed.append(name)

        await self.engine._run_ordered(list(self.changes), graph.dependents(deps), action)
        for key in ("TemplateBody", "Template", "Parameters", "ParameterValues", "Outputs", "Dependencies", "Description", "Imports"):
            if key in self.previous:
                self.record[key] = self.previous[key]
        await self.stacks.set_exports(self.record, {o["ExportName"]: o["OutputValue"] for o in self.record.get("Outputs", []) if "ExportName" in o})
        if failed:
            await self.stacks.stack_event(self.record, "UPDATE_ROLLBACK_FAILED", f"The following resource(s) failed to update: [{', '.join(failed)}]. ")
            return
        await self.stacks.stack_event(self.record, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
        await self.stacks.stack_event(self.record, "UPDATE_ROLLBACK_COMPLETE")

    async def _undo(self, name: str) -> None:
        change = self.changes[name]
        current = self.record["Resources"].get(name)
        if change.kind == "add":
            if current is not None:
                await self.engine._delete_one(self.record, name, current, honour_retain=False)
                self.record["Resources"].pop(name, None)
            return
        assert change.old is not None
        if change.kind == "replace":
            if current is not None and current.get("PhysicalResourceId") and current["PhysicalResourceId"] != change.old["PhysicalResourceId"]:
                await self.engine._delete_one(self.record, name, current, honour_retain=False)
            self.record["Resources"][name] = change.old
            await self.engine._resource_event(self.record, name, "UPDATE_COMPLETE")
            return
        handler = self.engine._handler(self.record, name)
        await self.engine._resource_event(self.record, name, "UPDATE_IN_PROGRESS")
        new_props = (current or {}).get("Properties") or {}
        try:
            await handler.update(self.engine._context(self.record, name), change.old["PhysicalResourceId"], change.old.get("Properties") or {}, new_props)
        except Exception as exc:
            reason = failure_reason(exc)
            await self.engine._resource_event(self.record, name, "UPDATE_FAILED", reason)
            raise ResourceFailed(name, reason) from exc
        self.record["Resources"][name] = change.old
        await self.engine._resource_event(self.record, name, "UPDATE_COMPLETE")



def _attributes(definition: dict[str, Any]) -> dict[str, Any]:
    """The parts of a resource definition other than its properties."""
    return {k: v for k, v in definition.items() if k != "Properties"}
