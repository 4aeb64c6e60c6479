"""Event buses, their resource policies (PutPermission) and tags."""

from __future__ import annotations

import random
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.events import store as st
from nubes.services.events.common import (
    already_exists,
    bus_arn,
    bus_name,
    bus_not_found,
    check_bus_name,
    not_found,
    now,
    paginate,
    timestamp,
    validation,
)
from nubes.services.events.core import EventsBase
from nubes.storage.base import Txn
from nubes.storage.keys import pack


def _bus_view(doc: dict[str, Any], *, listing: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"Name": doc["Name"], "Arn": doc["Arn"]}
    for key in ("Description", "KmsKeyIdentifier", "DeadLetterConfig", "Policy"):
        if doc.get(key) and not (listing and key in ("KmsKeyIdentifier", "DeadLetterConfig")):
            out[key] = doc[key]
    if doc.get("CreationTime"):
        out["CreationTime"] = timestamp(doc["CreationTime"])
        out["LastModifiedTime"] = timestamp(doc.get("LastModifiedTime") or doc["CreationTime"])
    return out


def _tags_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


class BusOperations(EventsBase):
    """CreateEventBus ... ListEventBuses, PutPermission, RemovePermission, tags."""

    async def create_event_bus(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Name"]
        check_bus_name(name)
        if params.get("EventSourceName"):
            raise AwsError(
                "ResourceNotFoundException",
                f"Event source {params['EventSourceName']} does not exist.",
                400,
            )
        if name.startswith("aws."):
            raise validation("Event bus name must not start with 'aws.'.")
        arn = bus_arn(ctx, name)
        created = now()
        doc: dict[str, Any] = {
            "Name": name, "Arn": arn, "CreationTime": created, "LastModifiedTime": created,
            # not 0: a bus deleted and created again must not look current to a
            # node that cached the old one's rules
            "Generation": random.getrandbits(40),
        }  # fmt: skip
        for key in ("Description", "KmsKeyIdentifier", "DeadLetterConfig"):
            if params.get(key):
                doc[key] = params[key]
        tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}

        def create(txn: Txn) -> bool:
            if st.get_bus(txn, ctx.region, self.account, name) is not None:
                return False
            st.put_json(txn, st.BUSES, pack(ctx.region, name), doc)
            st.put_tags(txn, arn, tags)
            return True

        if not await self.write(create):
            raise already_exists(f"Event bus {name} already exists.")
        out = {"EventBusArn": arn}
        out.update(
            {k: doc[k] for k in ("Description", "KmsKeyIdentifier", "DeadLetterConfig") if k in doc}
        )
        return out

    async def update_event_bus(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = bus_name(params.get("Name"))

        def update(txn: Txn) -> dict[str, Any] | None:
            doc = st.get_bus(txn, ctx.region, self.account, name)
            if doc is None:
                return None
            for key in ("Description", "KmsKeyIdentifier", "DeadLetterConfig"):
                if key in params:
                    doc[key] = params[key]
            doc["LastModifiedTime"] = now()
            doc.setdefault("CreationTime", doc["LastModifiedTime"])
            st.put_json(txn, st.BUSES, pack(ctx.region, name), doc)
            return doc

        doc = await self.write(update)
        if doc is None:
            raise bus_not_found(name)
        out = {"Arn": doc["Arn"], "Name": name}
        out.update(
            {
                k: doc[k]
                for k in ("Description", "KmsKeyIdentifier", "DeadLetterConfig")
                if doc.get(k)
            }
        )
        return out

    async def delete_event_bus(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = bus_name(params["Name"])
        if name == "default":
            raise validation("Cannot delete event bus default.")

        def delete(txn: Txn) -> None:
            doc = st.get_bus(txn, ctx.region, self.account, name)
            if doc is None:
                return
            for rule in st.rules_of_bus(txn, ctx.region, name):
                st.put_tags(txn, rule["Arn"], {})
            txn.delete_prefix(st.RULES, pack(ctx.region, name))
            txn.delete_prefix(st.TARGETS, pack(ctx.region, name))
            txn.delete(st.BUSES, pack(ctx.region, name))
            st.put_tags(txn, doc["Arn"], {})

        await self.write(delete)
        self._indexes.pop((ctx.region, name), None)
        return {}

    async def describe_event_bus(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = bus_name(params.get("Name"))
        doc = await self.read(lambda txn: st.get_bus(txn, ctx.region, self.account, name))
        if doc is None:
            raise bus_not_found(name)
        return _bus_view(doc)

    async def list_event_buses(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""

        def scan(txn: Txn) -> list[dict[str, Any]]:
            buses = {d["Name"]: d for d in st.scan_json(txn, st.BUSES, ctx.region)}
            buses.setdefault("default", st.default_bus(ctx.region, self.account))
            return [buses[n] for n in sorted(buses) if n.startswith(prefix)]

        buses = await self.read(scan)
        page, token = paginate(buses, params, lambda d: str(d["Name"]))
        out: dict[str, Any] = {"EventBuses": [_bus_view(d, listing=True) for d in page]}
        if token:
            out["NextToken"] = token
        return out

    # -- resource policy -------------------------------------------------------

    async def put_permission(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = bus_name(params.get("EventBusName"))
        statement = self._statement(ctx, name, params) if not params.get("Policy") else None
        policy_text = params.get("Policy")
        if policy_text is not None:
            try:
                policy = orjson.loads(policy_text)
            except orjson.JSONDecodeError:
                raise validation("The policy is not valid JSON.") from None
            if not isinstance(policy, dict):
                raise validation("The policy is not valid JSON.")

        def put(txn: Txn) -> bool:
            doc = st.get_bus(txn, ctx.region, self.account, name)
            if doc is None:
                return False
            if statement is None:
                doc["Policy"] = policy_text
            else:
                current: dict[str, Any] = {"Version": "2012-10-17", "Statement": []}
                if doc.get("Policy"):
                    current = orjson.loads(doc["Policy"])
                statements: list[dict[str, Any]] = current.get("Statement", [])
                kept = [s for s in statements if s.get("Sid") != statement["Sid"]]
                current["Statement"] = [*kept, statement]
                doc["Policy"] = orjson.dumps(current).decode()
            doc.setdefault("CreationTime", now())
            doc["LastModifiedTime"] = now()
            st.put_json(txn, st.BUSES, pack(ctx.region, name), doc)
            return True

        if not await self.write(put):
            raise bus_not_found(name)
        return {}

    @staticmethod
    def _statement(ctx: RequestContext, name: str, params: dict[str, Any]) -> dict[str, Any]:
        sid, principal = params.get("StatementId"), params.get("Principal")
        action = params.get("Action") or "events:PutEvents"
        if not sid or not principal:
            raise validation("Parameter(s) StatementId, Principal and Action must be specified.")
        if action != "events:PutEvents":
            raise validation("Provided value in parameter 'action' is not supported.")
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": "*" if principal == "*" else {"AWS": f"arn:aws:iam::{principal}:root"},
            "Action": action,
            "Resource": bus_arn(ctx, name),
        }
        condition = params.get("Condition")
        if condition:
            statement["Condition"] = {
                condition["Type"]: {condition["Key"]: condition["Value"]}}  # fmt: skip
        return statement

    async def remove_permission(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = bus_name(params.get("EventBusName"))
        sid, remove_all = params.get("StatementId"), bool(params.get("RemoveAllPermissions"))

        def remove(txn: Txn) -> str:
            doc = st.get_bus(txn, ctx.region, self.account, name)
            if doc is None:
                return "bus"
            policy = orjson.loads(doc["Policy"]) if doc.get("Policy") else None
            if remove_all:
                doc.pop("Policy", None)
            else:
                statements = (policy or {}).get("Statement", [])
                kept = [s for s in statements if s.get("Sid") != sid]
                if policy is None or len(kept) == len(statements):
                    return "statement"
                policy["Statement"] = kept
                doc["Policy"] = orjson.dumps(policy).decode() if kept else None
                if not kept:
                    doc.pop("Policy")
            st.put_json(txn, st.BUSES, pack(ctx.region, name), doc)
            return ""

        problem = await self.write(remove)
        if problem == "bus":
            raise bus_not_found(name)
        if problem == "statement":
            raise not_found("Statement with the provided id does not exist.")
        return {}

    # -- tags ----------------------------------------------------------------------

    async def _check_taggable(self, arn: str) -> None:
        parts = arn.split(":", 5)
        if len(parts) < 6 or parts[2] != "events":
            raise validation(
                f"Parameter {arn} is not valid. Reason: Provided Arn is not in correct format."
            )
        region, resource = parts[3], parts[5]

        def exists(txn: Txn) -> bool:
            kind, _, rest = resource.partition("/")
            if kind == "event-bus":
                return st.get_bus(txn, region, self.account, rest) is not None
            if kind == "rule":
                bus, _, rule = rest.rpartition("/")
                return txn.get(st.RULES, pack(region, bus or "default", rule)) is not None
            return True

        if not await self.read(exists):
            raise not_found(f"Resource {arn} does not exist.")

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["ResourceARN"]
        await self._check_taggable(arn)
        new = {t["Key"]: t["Value"] for t in params.get("Tags") or []}

        def tag(txn: Txn) -> None:
            st.put_tags(txn, arn, {**st.get_tags(txn, arn), **new})

        await self.write(tag)
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["ResourceARN"]
        await self._check_taggable(arn)
        keys = set(params.get("TagKeys") or [])

        def untag(txn: Txn) -> None:
            st.put_tags(txn, arn, {k: v for k, v in st.get_tags(txn, arn).items() if k not in keys})

        await self.write(untag)
        return {}

    async def list_tags_for_resource(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        arn = params["ResourceARN"]
        await self._check_taggable(arn)
        tags = await self.read(lambda txn: st.get_tags(txn, arn))
        return {"Tags": _tags_list(tags)}
