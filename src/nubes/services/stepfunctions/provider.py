"""The Step Functions provider: state machines, versions, aliases, activities, tags.

Executions live in ``executions`` (start, run, resume, history) and task callbacks
and activity polling in ``callbacks``; this class puts them together.
"""

from __future__ import annotations

from typing import Any

import orjson

from nubes.services.base import RequestContext
from nubes.services.stepfunctions import store
from nubes.services.stepfunctions.callbacks import CallbackOps
from nubes.services.stepfunctions.common import (
    check_name,
    error,
    new_id,
    now,
    page,
    parse_arn,
    tags_in,
    tags_out,
    validated,
)
from nubes.services.stepfunctions.redrive import RedriveOps
from nubes.storage.base import Txn
from nubes.workflows.definition import parse_json
from nubes.workflows.errors import InvalidDefinition
from nubes.workflows.validate import check


def _machine_missing(arn: str) -> Exception:
    return error("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")


class StepFunctionsProvider(RedriveOps, CallbackOps):
    """AWS Step Functions."""

    # -- state machines ------------------------------------------------------------

    async def create_state_machine(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("name"))
        definition = params.get("definition")
        validated(definition)
        kind = params.get("type") or "STANDARD"
        if kind not in ("STANDARD", "EXPRESS"):
            raise error("ValidationException", f"Invalid type: {kind}")
        arn = ctx.arn("states", f"stateMachine:{name}")
        created = now()
        doc = {"name": name, "arn": arn, "definition": definition,
               "roleArn": params.get("roleArn", ""), "type": kind, "creationDate": created,
               "loggingConfiguration": params.get("loggingConfiguration") or {
                   "level": "OFF", "includeExecutionData": False},
               "tracingConfiguration": params.get("tracingConfiguration") or {"enabled": False},
               "description": params.get("versionDescription"),
               "revisionId": new_id(), "tags": tags_in(params.get("tags")), "next_version": 1}

        def create(txn: Txn) -> dict[str, Any]:
            existing = store.get(txn, store.MACHINES, store.key(ctx.region, name))
            if existing is not None:
                same = all(existing.get(k) == doc[k] for k in ("definition", "roleArn", "type"))
                if not same:
                    raise error("StateMachineAlreadyExists",
                                f"State Machine Already Exists: '{arn}'")
                return existing
            store.put(txn, store.MACHINES, store.key(ctx.region, name), doc)
            return doc

        saved = await self.app.store.write(create)
        out: dict[str, Any] = {"stateMachineArn": arn, "creationDate": saved["creationDate"]}
        if params.get("publish"):
            out["stateMachineVersionArn"] = (await self._publish(
                ctx.region, name, params.get("versionDescription")))["stateMachineVersionArn"]
        return out

    async def machine(self, arn: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(machine document, version or alias document) for a machine/version/alias ARN."""
        region, name, qualifier = parse_arn(arn, "stateMachine")

        def read(txn: Txn) -> tuple[Any, Any]:
            doc = store.get(txn, store.MACHINES, store.key(region, name))
            if doc is None or qualifier is None:
                return doc, None
            if qualifier.isdigit():
                return doc, store.get(txn, store.VERSIONS, store.key(region, name, int(qualifier)))
            return doc, store.get(txn, store.ALIASES, store.key(region, name, qualifier))

        doc, sub = await self.app.store.read(read)
        if doc is None or (qualifier is not None and sub is None):
            if qualifier is not None and doc is not None:
                raise error("ResourceNotFound", f"Resource not found: '{arn}'")
            raise _machine_missing(arn)
        return doc, sub

    async def describe_state_machine(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("stateMachineArn")
        doc, version = await self.machine(str(arn))
        if version is not None and "routingConfiguration" in version:
            raise error("InvalidArn", f"Invalid Arn: '{arn}'")
        source = version or doc
        out = {"stateMachineArn": source["arn"], "name": doc["name"], "status": "ACTIVE",
               "definition": source["definition"], "roleArn": source["roleArn"],
               "type": doc["type"], "creationDate": source["creationDate"],
               "loggingConfiguration": doc["loggingConfiguration"],
               "tracingConfiguration": doc["tracingConfiguration"],
               "revisionId": source["revisionId"]}
        if source.get("description"):
            out["description"] = source["description"]
        return out

    async def update_state_machine(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = str(params.get("stateMachineArn"))
        region, name, qualifier = parse_arn(arn, "stateMachine")
        if qualifier is not None:
            raise error("ValidationException", "Version and alias ARNs cannot be updated")
        changes: dict[str, Any] = {k: params[k] for k in ("definition", "roleArn", "loggingConfiguration",
                                          "tracingConfiguration") if k in params}
        if not changes:
            raise error("MissingRequiredParameter", "Either the definition, the role ARN, the "
                        "LoggingConfiguration, or the TracingConfiguration must be specified")
        if "definition" in changes:
            validated(changes["definition"])

        def update(txn: Txn) -> dict[str, Any]:
            doc = store.get(txn, store.MACHINES, store.key(region, name))
            if doc is None:
                raise _machine_missing(arn)
            doc.update(changes)
            doc["revisionId"], doc["updateDate"] = new_id(), now()
            store.put(txn, store.MACHINES, store.key(region, name), doc)
            return doc

        doc = await self.app.store.write(update)
        out: dict[str, Any] = {"updateDate": doc["updateDate"], "revisionId": doc["revisionId"]}
        if params.get("publish"):
            out["stateMachineVersionArn"] = (await self._publish(
                region, name, params.get("versionDescription")))["stateMachineVersionArn"]
        return out

    async def delete_state_machine(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = str(params.get("stateMachineArn"))
        region, name, qualifier = parse_arn(arn, "stateMachine")

        def delete(txn: Txn) -> None:
            if qualifier is not None:
                raise error("ValidationException", "Use DeleteStateMachineVersion or "
                            "DeleteStateMachineAlias for qualified ARNs")
            txn.delete(store.MACHINES, store.key(region, name))
            txn.delete_prefix(store.VERSIONS, store.key(region, name))
            txn.delete_prefix(store.ALIASES, store.key(region, name))

        await self.app.store.write(delete)
        return {}

    async def list_state_machines(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        docs = await self.app.store.read(lambda txn: store.scan(txn, store.MACHINES, ctx.region))
        items = [{"stateMachineArn": d["arn"], "name": d["name"], "type": d["type"],
                  "creationDate": d["creationDate"]} for d in docs]
        chunk, token = page(items, params)
        return {"stateMachines": chunk, **({"nextToken": token} if token else {})}

    async def validate_state_machine_definition(self, ctx: RequestContext,
                                                params: dict[str, Any]) -> dict[str, Any]:
        try:
            diagnostics = check(parse_json(str(params.get("definition", ""))))
        except InvalidDefinition as exc:
            diagnostics = exc.diagnostics
        limit = int(params.get("maxResults") or 100)
        out = [{"severity": d.severity, "code": d.code, "message": d.message,
                **({"location": d.location} if d.location is not None else {})}
               for d in diagnostics]
        return {"result": "FAIL" if out else "OK", "diagnostics": out[:limit],
                "truncated": len(out) > limit}

    # -- versions and aliases ---------------------------------------------------------

    async def _publish(self, region: str, name: str, description: Any,
                       revision: Any = None) -> dict[str, Any]:
        def publish(txn: Txn) -> dict[str, Any]:
            doc = store.get(txn, store.MACHINES, store.key(region, name))
            if doc is None:
                raise _machine_missing(name)
            if revision is not None and revision != doc["revisionId"]:
                raise error("ConflictException", "The revisionId does not match the latest one")
            for version in store.scan(txn, store.VERSIONS, region, name):
                if version["revisionId"] == doc["revisionId"]:
                    return version  # publishing an unchanged revision returns its version
            number = doc["next_version"]
            doc["next_version"] = number + 1
            version = {"arn": f"{doc['arn']}:{number}", "stateMachineVersionArn":
                       f"{doc['arn']}:{number}", "definition": doc["definition"],
                       "roleArn": doc["roleArn"], "revisionId": doc["revisionId"],
                       "creationDate": now(), "description": description}
            store.put(txn, store.VERSIONS, store.key(region, name, number), version)
            store.put(txn, store.MACHINES, store.key(region, name), doc)
            return version

        return await self.app.store.write(publish)

    async def publish_state_machine_version(self, ctx: RequestContext,
                                            params: dict[str, Any]) -> dict[str, Any]:
        region, name, qualifier = parse_arn(params.get("stateMachineArn"), "stateMachine")
        if qualifier is not None:
            raise error("ValidationException", "Expected an unqualified state machine ARN")
        version = await self._publish(region, name, params.get("description"),
                                      params.get("revisionId"))
        return {"creationDate": version["creationDate"],
                "stateMachineVersionArn": version["stateMachineVersionArn"]}

    async def list_state_machine_versions(self, ctx: RequestContext,
                                          params: dict[str, Any]) -> dict[str, Any]:
        region, name, _ = parse_arn(params.get("stateMachineArn"), "stateMachine")
        docs = await self.app.store.read(lambda txn: store.scan(txn, store.VERSIONS, region, name))
        items = [{"stateMachineVersionArn": d["arn"], "creationDate": d["creationDate"]}
                 for d in reversed(docs)]
        chunk, token = page(items, params)
        return {"stateMachineVersions": chunk, **({"nextToken": token} if token else {})}

    async def delete_state_machine_version(self, ctx: RequestContext,
                                           params: dict[str, Any]) -> dict[str, Any]:
        arn = str(params.get("stateMachineVersionArn"))
        region, name, qualifier = parse_arn(arn, "stateMachine")
        if qualifier is None or not qualifier.isdigit():
            raise error("ValidationException", f"Invalid version ARN: '{arn}'")

        def delete(txn: Txn) -> None:
            for alias in store.scan(txn, store.ALIASES, region, name):
                if any(r["stateMachineVersionArn"] == arn for r in alias["routingConfiguration"]):
                    raise error("ConflictException", "Version is referenced by alias "
                                f"{alias['arn']}")
            txn.delete(store.VERSIONS, store.key(region, name, int(qualifier)))

        await self.app.store.write(delete)
        return {}

    async def _check_routing(self, routing: Any) -> None:
        if not isinstance(routing, list) or not 1 <= len(routing) <= 2:
            raise error("ValidationException", "routingConfiguration must have 1 or 2 entries")
        for entry in routing:
            _, version = await self.machine(str(entry.get("stateMachineVersionArn")))
            if version is None or "routingConfiguration" in version:
                raise error("ValidationException", "routingConfiguration must name versions")
        if sum(int(e.get("weight", 0)) for e in routing) != 100:
            raise error("ValidationException", "The weights of routingConfiguration must add "
                        "up to 100")

    async def create_state_machine_alias(self, ctx: RequestContext,
                                         params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("name"))
        routing: list[dict[str, Any]] = params.get("routingConfiguration") or []
        await self._check_routing(routing)
        region, machine, _ = parse_arn(routing[0]["stateMachineVersionArn"], "stateMachine")
        arn = ctx.arn("states", f"stateMachine:{machine}:{name}")
        doc = {"arn": arn, "name": name, "description": params.get("description"),
               "routingConfiguration": routing, "creationDate": now()}

        def create(txn: Txn) -> dict[str, Any]:
            existing = store.get(txn, store.ALIASES, store.key(region, machine, name))
            if existing is not None:
                if existing["routingConfiguration"] != routing:
                    raise error("ConflictException", f"Alias already exists: '{arn}'")
                return existing
            store.put(txn, store.ALIASES, store.key(region, machine, name), doc)
            return doc

        saved = await self.app.store.write(create)
        return {"stateMachineAliasArn": arn, "creationDate": saved["creationDate"]}

    async def describe_state_machine_alias(self, ctx: RequestContext,
                                           params: dict[str, Any]) -> dict[str, Any]:
        _, alias = await self.machine(str(params.get("stateMachineAliasArn")))
        if alias is None or "routingConfiguration" not in alias:
            raise error("ResourceNotFound", "Alias not found")
        out = {"stateMachineAliasArn": alias["arn"], "name": alias["name"],
               "routingConfiguration": alias["routingConfiguration"],
               "creationDate": alias["creationDate"],
               "updateDate": alias.get("updateDate", alias["creationDate"])}
        if alias.get("description"):
            out["description"] = alias["description"]
        return out

    async def update_state_machine_alias(self, ctx: RequestContext,
                                         params: dict[str, Any]) -> dict[str, Any]:
        arn = str(params.get("stateMachineAliasArn"))
        region, machine, name = parse_arn(arn, "stateMachine")
        if "routingConfiguration" in params:
            await self._check_routing(params["routingConfiguration"])

        def update(txn: Txn) -> dict[str, Any]:
            doc = store.get(txn, store.ALIASES, store.key(region, machine, str(name)))
            if doc is None:
                raise error("ResourceNotFound", f"Resource not found: '{arn}'")
            for k in ("routingConfiguration", "description"):
                if k in params:
                    doc[k] = params[k]
            doc["updateDate"] = now()
            store.put(txn, store.ALIASES, store.key(region, machine, str(name)), doc)
            return doc

        doc = await self.app.store.write(update)
        return {"updateDate": doc["updateDate"]}

    async def delete_state_machine_alias(self, ctx: RequestContext,
                                         params: dict[str, Any]) -> dict[str, Any]:
        region, machine, name = parse_arn(params.get("stateMachineAliasArn"), "stateMachine")
        await self.app.store.write(
            lambda txn: txn.delete(store.ALIASES, store.key(region, machine, str(name))))
        return {}

    async def list_state_machine_aliases(self, ctx: RequestContext,
                                         params: dict[str, Any]) -> dict[str, Any]:
        region, machine, _ = parse_arn(params.get("stateMachineArn"), "stateMachine")
        docs = await self.app.store.read(lambda txn: store.scan(txn, store.ALIASES, region,
                                                                machine))
        items = [{"stateMachineAliasArn": d["arn"], "creationDate": d["creationDate"]}
                 for d in docs]
        chunk, token = page(items, params)
        return {"stateMachineAliases": chunk, **({"nextToken": token} if token else {})}

    # -- activities --------------------------------------------------------------------

    async def create_activity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("name"))
        arn = ctx.arn("states", f"activity:{name}")
        doc = {"arn": arn, "name": name, "creationDate": now(),
               "tags": tags_in(params.get("tags"))}

        def create(txn: Txn) -> dict[str, Any]:
            existing = store.get(txn, store.ACTIVITIES, store.key(ctx.region, name))
            if existing is not None:
                return existing  # CreateActivity is idempotent
            store.put(txn, store.ACTIVITIES, store.key(ctx.region, name), doc)
            return doc

        saved = await self.app.store.write(create)
        return {"activityArn": arn, "creationDate": saved["creationDate"]}

    async def _activity(self, arn: Any) -> dict[str, Any]:
        region, name, _ = parse_arn(arn, "activity")
        doc = await self.app.store.read(
            lambda txn: store.get(txn, store.ACTIVITIES, store.key(region, name)))
        if doc is None:
            raise error("ActivityDoesNotExist", f"Activity Does Not Exist: '{arn}'")
        return doc

    async def describe_activity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self._activity(params.get("activityArn"))
        return {"activityArn": doc["arn"], "name": doc["name"], "creationDate": doc["creationDate"]}

    async def delete_activity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        region, name, _ = parse_arn(params.get("activityArn"), "activity")
        await self.app.store.write(
            lambda txn: txn.delete(store.ACTIVITIES, store.key(region, name)))
        return {}

    async def list_activities(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        docs = await self.app.store.read(lambda txn: store.scan(txn, store.ACTIVITIES, ctx.region))
        items = [{"activityArn": d["arn"], "name": d["name"], "creationDate": d["creationDate"]}
                 for d in docs]
        chunk, token = page(items, params)
        return {"activities": chunk, **({"nextToken": token} if token else {})}

    # -- tags --------------------------------------------------------------------------

    def _tag_target(self, arn: Any) -> tuple[str, bytes]:
        if isinstance(arn, str) and ":activity:" in arn:
            region, name, _ = parse_arn(arn, "activity")
            return store.ACTIVITIES, store.key(region, name)
        region, name, qualifier = parse_arn(arn, "stateMachine")
        if qualifier is not None:
            raise error("InvalidArn", f"Invalid Arn: '{arn}'")
        return store.MACHINES, store.key(region, name)

    async def _change_tags(self, arn: Any, change: Any) -> dict[str, str]:
        table, key = self._tag_target(arn)

        def apply(txn: Txn) -> dict[str, str]:
            doc = store.get(txn, table, key)
            if doc is None:
                raise error("ResourceNotFound", f"Resource not found: '{arn}'")
            tags: dict[str, str] = doc.setdefault("tags", {})
            if change is not None:
                change(tags)
                txn.put(table, key, orjson.dumps(doc))
            return tags

        return await (self.app.store.write(apply) if change is not None
                      else self.app.store.read(apply))

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        new = tags_in(params.get("tags"))
        await self._change_tags(params.get("resourceArn"), lambda tags: tags.update(new))
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        keys = list(params.get("tagKeys") or ())

        def drop(tags: dict[str, str]) -> None:
            for k in keys:
                tags.pop(k, None)

        await self._change_tags(params.get("resourceArn"), drop)
        return {}

    async def list_tags_for_resource(self, ctx: RequestContext,
                                     params: dict[str, Any]) -> dict[str, Any]:
        return {"tags": tags_out(await self._change_tags(params.get("resourceArn"), None))}
