"""IAM: roles, users, groups, inline and managed policies (with versions), and
access keys. Stored and returned as IAM does; nubes does not enforce policies.

Roles, users and groups share one shape of code: ``kind`` is ``Role``, ``User`` or
``Group`` and each operation family (``Put{kind}Policy``, ``Attach{kind}Policy``,
...) is generated for all three below.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

import orjson

from nubes.aws.errors import AwsError
from nubes.gateway.auth import REVOKED_TOPIC, STS_CREDENTIALS_TABLE
from nubes.services.base import Provider, RequestContext
from nubes.storage.base import Txn
from nubes.storage.keys import pack, unpack

ENTITIES = "iam.entities"  # (kind, name) → record
INLINE = "iam.inline"  # (kind, name, policy name) → document
ATTACHED = "iam.attached"  # (kind, name, policy arn) → ""
POLICIES = "iam.policies"  # (arn) → managed policy with its versions
MEMBERS = "iam.members"  # (group, user) → ""
KEYS = "iam.keys"  # (user, access key id) → record
_PREFIX = {"Role": "AROA", "User": "AIDA", "Group": "AGPA", "Policy": "ANPA", "Key": "AKIA"}
_ALNUM = string.ascii_uppercase + string.digits
_MAX_VERSIONS = 5


def _id(kind: str) -> str:
    return _PREFIX[kind] + "".join(secrets.choice(_ALNUM) for _ in range(17))


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def _document(text: str) -> str:
    """Validate a policy document; IAM answers with it URL-encoded."""
    try:
        doc = orjson.loads(unquote(text) if text.startswith("%7B") else text)
    except orjson.JSONDecodeError:
        raise AwsError("MalformedPolicyDocument", "This policy contains invalid Json", 400) from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise AwsError("MalformedPolicyDocument", "Syntax errors in policy.", 400)
    return quote(orjson.dumps(doc).decode(), safe="")


def _no_such(kind: str, name: str) -> AwsError:
    return AwsError("NoSuchEntity", f"The {kind.lower()} with name {name} cannot be found.", 404)


def _load(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else dict(orjson.loads(raw))


class IamProvider(Provider):
    """IAM is global: records are not split by region."""

    def _arn(self, ctx: RequestContext, kind: str, name: str, path: str = "/") -> str:
        return f"arn:aws:iam::{ctx.account_id}:{kind.lower()}{path}{name}"

    async def _get(self, kind: str, name: str) -> dict[str, Any]:
        record = _load(await self.app.store.read(lambda txn: txn.get(ENTITIES, pack(kind, name))))
        if record is None:
            raise _no_such(kind, name)
        return record

    async def _create(self, ctx: RequestContext, kind: str, params: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        name = params[f"{kind}Name"]
        path = params.get("Path") or "/"
        record = {"Path": path, f"{kind}Name": name, f"{kind}Id": _id(kind), "Arn": self._arn(ctx, kind, name, path),
                  "CreateDate": _now(), **extra}  # fmt: skip
        if params.get("Tags"):
            record["Tags"] = params["Tags"]

        def create(txn: Txn) -> None:
            if not txn.insert(ENTITIES, pack(kind, name), orjson.dumps(record)):
                raise AwsError("EntityAlreadyExists", f"{kind} with name {name} already exists.", 409)

        await self.app.store.write(create)
        return record

    async def _update(self, kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        def update(txn: Txn) -> dict[str, Any]:
            record = _load(txn.get(ENTITIES, pack(kind, name)))
            if record is None:
                raise _no_such(kind, name)
            change(record)
            txn.put(ENTITIES, pack(kind, name), orjson.dumps(record))
            return record

        return await self.app.store.write(update)

    async def _delete(self, kind: str, name: str) -> None:
        def delete(txn: Txn) -> None:
            if txn.get(ENTITIES, pack(kind, name)) is None:
                raise _no_such(kind, name)
            if txn.count(ATTACHED, prefix=pack(kind, name)):
                raise AwsError("DeleteConflict", "Cannot delete entity, must detach all policies first.", 409)
            if txn.count(INLINE, prefix=pack(kind, name)):
                raise AwsError("DeleteConflict", "Cannot delete entity, must delete policies first.", 409)
            if kind == "Group" and txn.count(MEMBERS, prefix=pack(name)):
                raise AwsError("DeleteConflict", "Cannot delete entity, must remove users from group first.", 409)
            txn.delete(ENTITIES, pack(kind, name))

        await self.app.store.write(delete)

    async def _list(self, kind: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = await self.app.store.read(lambda txn: txn.scan(ENTITIES, prefix=pack(kind)))
        prefix = params.get("PathPrefix") or "/"
        return [r for r in (orjson.loads(v) for _, v in rows) if r["Path"].startswith(prefix)]

    # -- roles ------------------------------------------------------------------------

    async def create_role(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        extra = {"AssumeRolePolicyDocument": _document(params["AssumeRolePolicyDocument"]),
                 "MaxSessionDuration": params.get("MaxSessionDuration") or 3600}  # fmt: skip
        if params.get("Description"):
            extra["Description"] = params["Description"]
        return {"Role": await self._create(ctx, "Role", params, extra)}

    async def get_role(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"Role": await self._get("Role", params["RoleName"])}

    async def delete_role(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._delete("Role", params["RoleName"])
        return {}

    async def list_roles(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return _page(await self._list("Role", params), params, "Roles")

    async def update_role(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(role: dict[str, Any]) -> None:
            for key in ("Description", "MaxSessionDuration"):
                if params.get(key) is not None:
                    role[key] = params[key]

        await self._update("Role", params["RoleName"], change)
        return {}

    async def update_assume_role_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        document = _document(params["PolicyDocument"])
        await self._update("Role", params["RoleName"], lambda role: role.__setitem__("AssumeRolePolicyDocument", document))
        return {}

    async def tag_role(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._update("Role", params["RoleName"], lambda r: _merge_tags(r, params["Tags"]))
        return {}

    async def untag_role(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._update("Role", params["RoleName"], lambda r: r.__setitem__("Tags", [t for t in r.get("Tags", []) if t["Key"] not in params["TagKeys"]]))
        return {}

    async def list_role_tags(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": (await self._get("Role", params["RoleName"])).get("Tags", []), "IsTruncated": False}

    # -- users and groups -------------------------------------------------------------------

    async def create_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"User": await self._create(ctx, "User", params, {})}

    async def get_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("UserName"):
            return {"User": {"Path": "/", "UserName": "root", "UserId": ctx.account_id,
                             "Arn": f"arn:aws:iam::{ctx.account_id}:root", "CreateDate": 0}}  # fmt: skip
        return {"User": await self._get("User", params["UserName"])}

    async def delete_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._delete("User", params["UserName"])
        return {}

    async def list_users(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return _page(await self._list("User", params), params, "Users")

    async def create_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"Group": await self._create(ctx, "Group", params, {})}

    async def get_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group = await self._get("Group", params["GroupName"])
        rows = await self.app.store.read(lambda txn: txn.scan(MEMBERS, prefix=pack(params["GroupName"])))
        users = [await self._get("User", v.decode()) for _, v in rows]
        return {"Group": group, "Users": users, "IsTruncated": False}

    async def delete_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._delete("Group", params["GroupName"])
        return {}

    async def list_groups(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return _page(await self._list("Group", params), params, "Groups")

    async def add_user_to_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._get("Group", params["GroupName"])
        await self._get("User", params["UserName"])
        await self.app.store.write(lambda txn: txn.put(MEMBERS, pack(params["GroupName"], params["UserName"]), params["UserName"].encode()))
        return {}

    async def remove_user_from_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.app.store.write(lambda txn: txn.delete(MEMBERS, pack(params["GroupName"], params["UserName"])))
        return {}

    # -- access keys (they sign requests to nubes) -------------------------------------------

    async def create_access_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        user = params.get("UserName") or "root"
        if user != "root":
            await self._get("User", user)
        key_id = _id("Key")
        secret = secrets.token_urlsafe(30)[:40]
        record = {"UserName": user, "AccessKeyId": key_id, "Status": "Active", "CreateDate": _now()}
        credential = {"AccessKeyId": key_id, "SecretAccessKey": secret, "Expiration": 32503680000.0,
                      "UserId": key_id, "Arn": f"arn:aws:iam::{ctx.account_id}:user/{user}"}  # fmt: skip

        def create(txn: Txn) -> None:
            txn.put(KEYS, pack(user, key_id), orjson.dumps(record))
            txn.put(STS_CREDENTIALS_TABLE, key_id.encode(), orjson.dumps(credential))

        await self.app.store.write(create)
        return {"AccessKey": {**record, "SecretAccessKey": secret}}

    async def list_access_keys(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        user = params.get("UserName") or "root"
        rows = await self.app.store.read(lambda txn: txn.scan(KEYS, prefix=pack(user)))
        return {"AccessKeyMetadata": [orjson.loads(v) for _, v in rows], "IsTruncated": False}

    async def delete_access_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        user = params.get("UserName") or "root"

        def delete(txn: Txn) -> None:
            if not txn.delete(KEYS, pack(user, params["AccessKeyId"])):
                raise AwsError("NoSuchEntity", f"The Access Key with id {params['AccessKeyId']} cannot be found.", 404)
            txn.delete(STS_CREDENTIALS_TABLE, params["AccessKeyId"].encode())

        await self.app.store.write(delete)
        self.app.bus.publish(REVOKED_TOPIC, params["AccessKeyId"])
        return {}

    # -- managed policies --------------------------------------------------------------------

    async def create_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        path = params.get("Path") or "/"
        arn = self._arn(ctx, "Policy", params["PolicyName"], path)
        now = _now()
        policy = {"PolicyName": params["PolicyName"], "PolicyId": _id("Policy"), "Arn": arn, "Path": path,
                  "DefaultVersionId": "v1", "AttachmentCount": 0, "IsAttachable": True, "CreateDate": now,
                  "UpdateDate": now, "Description": params.get("Description"), "Tags": params.get("Tags") or [],
                  "Versions": [{"VersionId": "v1", "Document": _document(params["PolicyDocument"]), "CreateDate": now}],
                  "NextVersion": 2}  # fmt: skip

        def create(txn: Txn) -> None:
            if not txn.insert(POLICIES, pack(arn), orjson.dumps(policy)):
                raise AwsError("EntityAlreadyExists", f"A policy called {params['PolicyName']} already exists. Duplicate names are not allowed.", 409)

        await self.app.store.write(create)
        return {"Policy": _policy_view(policy)}

    async def _policy(self, arn: str) -> dict[str, Any]:
        if arn.startswith("arn:aws:iam::aws:policy/"):
            name = arn.rsplit("/", 1)[1]
            return {"PolicyName": name, "PolicyId": "ANPA" + name.upper()[:17].ljust(17, "X"), "Arn": arn, "Path": "/",
                    "DefaultVersionId": "v1", "AttachmentCount": 0, "IsAttachable": True, "CreateDate": 0, "UpdateDate": 0,
                    "Versions": [{"VersionId": "v1", "Document": quote('{"Version":"2012-10-17","Statement":[]}', safe=""), "CreateDate": 0}]}  # fmt: skip
        policy = _load(await self.app.store.read(lambda txn: txn.get(POLICIES, pack(arn))))
        if policy is None:
            raise AwsError("NoSuchEntity", f"Policy {arn} does not exist or is not attachable.", 404)
        return policy

    async def get_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"Policy": _policy_view(await self._policy(params["PolicyArn"]))}

    async def list_policies(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = await self.app.store.read(lambda txn: txn.scan(POLICIES))
        return _page([_policy_view(orjson.loads(v)) for _, v in rows], params, "Policies")

    async def delete_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["PolicyArn"]

        def delete(txn: Txn) -> None:
            policy = _load(txn.get(POLICIES, pack(arn)))
            if policy is None:
                raise AwsError("NoSuchEntity", f"Policy {arn} was not found.", 404)
            if policy.get("AttachmentCount"):
                raise AwsError("DeleteConflict", "Cannot delete a policy attached to entities.", 409)
            txn.delete(POLICIES, pack(arn))

        await self.app.store.write(delete)
        return {}

    async def _change_policy(self, arn: str, change: Callable[[dict[str, Any]], Any]) -> Any:
        def update(txn: Txn) -> Any:
            policy = _load(txn.get(POLICIES, pack(arn)))
            if policy is None:
                raise AwsError("NoSuchEntity", f"Policy {arn} was not found.", 404)
            result = change(policy)
            policy["UpdateDate"] = _now()
            txn.put(POLICIES, pack(arn), orjson.dumps(policy))
            return result

        return await self.app.store.write(update)

    async def create_policy_version(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        document = _document(params["PolicyDocument"])

        def add(policy: dict[str, Any]) -> dict[str, Any]:
            if len(policy["Versions"]) >= _MAX_VERSIONS:
                raise AwsError("LimitExceeded", "A managed policy can have up to 5 versions. Before you create a new version, you must delete an existing version.", 409)
            version = {"VersionId": f"v{policy['NextVersion']}", "Document": document, "CreateDate": _now()}
            policy["NextVersion"] += 1
            policy["Versions"].append(version)
            if params.get("SetAsDefault"):
                policy["DefaultVersionId"] = version["VersionId"]
            return _version_view(policy, version)

        return {"PolicyVersion": await self._change_policy(params["PolicyArn"], add)}

    async def get_policy_version(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        policy = await self._policy(params["PolicyArn"])
        version = next((v for v in policy["Versions"] if v["VersionId"] == params["VersionId"]), None)
        if version is None:
            raise AwsError("NoSuchEntity", f"Policy {params['PolicyArn']} version {params['VersionId']} does not exist.", 404)
        return {"PolicyVersion": _version_view(policy, version)}

    async def list_policy_versions(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        policy = await self._policy(params["PolicyArn"])
        return {"Versions": [_version_view(policy, v, document=False) for v in policy["Versions"]], "IsTruncated": False}

    async def delete_policy_version(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def drop(policy: dict[str, Any]) -> None:
            if params["VersionId"] == policy["DefaultVersionId"]:
                raise AwsError("DeleteConflict", "Cannot delete the default version of a policy.", 409)
            policy["Versions"] = [v for v in policy["Versions"] if v["VersionId"] != params["VersionId"]]

        await self._change_policy(params["PolicyArn"], drop)
        return {}

    async def set_default_policy_version(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def default(policy: dict[str, Any]) -> None:
            if not any(v["VersionId"] == params["VersionId"] for v in policy["Versions"]):
                raise AwsError("NoSuchEntity", f"Policy {params['PolicyArn']} version {params['VersionId']} does not exist.", 404)
            policy["DefaultVersionId"] = params["VersionId"]

        await self._change_policy(params["PolicyArn"], default)
        return {}


def _merge_tags(record: dict[str, Any], tags: list[dict[str, str]]) -> None:
    merged = {t["Key"]: t["Value"] for t in record.get("Tags", [])}
    merged.update({t["Key"]: t["Value"] for t in tags})
    record["Tags"] = [{"Key": k, "Value": v} for k, v in merged.items()]


def _policy_view(policy: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in policy.items() if k not in ("Versions", "NextVersion") and v is not None}


def _version_view(policy: dict[str, Any], version: dict[str, Any], document: bool = True) -> dict[str, Any]:
    out = {"VersionId": version["VersionId"], "IsDefaultVersion": version["VersionId"] == policy["DefaultVersionId"],
           "CreateDate": version["CreateDate"]}  # fmt: skip
    if document:
        out["Document"] = version["Document"]
    return out


def _page(items: list[Any], params: dict[str, Any], key: str) -> dict[str, Any]:
    size = int(params.get("MaxItems") or 100)
    start = int(params["Marker"]) if str(params.get("Marker", "")).isdigit() else 0
    out: dict[str, Any] = {key: items[start : start + size], "IsTruncated": start + size < len(items)}
    if out["IsTruncated"]:
        out["Marker"] = str(start + size)
    return out


def _install() -> None:
    """Inline and attached policy operations for roles, users and groups alike."""

    def put_inline(kind: str) -> Any:
        async def method(self: IamProvider, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
            name = params[f"{kind}Name"]
            await self._get(kind, name)
            document = _document(params["PolicyDocument"])
            await self.app.store.write(lambda txn: txn.put(INLINE, pack(kind, name, params["PolicyName"]), document.encode()))
            return {}

        return method

    def get_inline(kind: str) -> Any:
        async def method(self: IamProvider, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
            name = params[f"{kind}Name"]
            raw = await self.app.store.read(lambda txn: txn.get(INLINE, pack(kind, name, params["PolicyName"])))
            if raw is None:
                raise AwsError("NoSuchEntity", f"The {kind.lower()} policy with name {params['PolicyName']} cannot be found.", 404)
            return {f"{kind}Name": name, "PolicyName": params["PolicyName"], "PolicyDocument": raw.decode()}

        return method

    def delete_inline(kind: str) -> Any:
        async def method(self: IamProvider, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
            name = params[f"{kind}Name"]
            if not await self.app.store.write(lambda txn: txn.delete(INLINE, pack(kind, name, params["PolicyName"]))):
                raise AwsError("NoSuchEntity", f"The {kind.lower()} policy with name {params['PolicyName']} cannot be found.", 404)
            return {}

        return method

    def list_inline(kind: str) -> Any:
        async def method(self: IamProvider, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
            name = params[f"{kind}Name"]
            await self._get(kind, name)
            prefix = pack(kind, name)
            rows = await self.app.store.read(lambda txn: txn.scan(INLINE, prefix=prefix))
            names = [str(unpack(key)[-1]) for key, _ in rows]
            return {"PolicyNames": names, "IsTruncated": False}

        return method

    def attach(kind: str, attach_it: bool) -> Any:
        async def method(self: IamProvider, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
            name, arn = params[f"{kind}Name"], params["PolicyArn"]
            await self._get(kind, name)
            await self._policy(arn)

            def change(txn: Txn) -> None:
                key = pack(kind, name, arn)
                changed = txn.insert(ATTACHED, key, b"") if attach_it else txn.delete(ATTACHED, key)
                if not changed and not attach_it:
                    raise AwsError("NoSuchEntity", f"Policy {arn} was not found.", 404)
                policy = _load(txn.get(POLICIES, pack(arn)))
                if policy is not None and changed:
                    policy["AttachmentCount"] = max(0, policy.get("AttachmentCount", 0) + (1 if attach_it else -1))
                    txn.put(POLICIES, pack(arn), orjson.dumps(policy))

            await self.app.store.write(change)
            return {}

        return method

    def list_attached(kind: str) -> Any:
        async def method(self: IamProvider, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
            name = params[f"{kind}Name"]
            await self._get(kind, name)
            prefix = pack(kind, name)
            rows = await self.app.store.read(lambda txn: txn.scan(ATTACHED, prefix=prefix))
            arns = [str(unpack(key)[-1]) for key, _ in rows]
            return {"AttachedPolicies": [{"PolicyName": a.rsplit("/", 1)[1], "PolicyArn": a} for a in arns], "IsTruncated": False}

        return method

    for kind in ("Role", "User", "Group"):
        for op, factory in ((f"put_{kind.lower()}_policy", put_inline), (f"get_{kind.lower()}_policy", get_inline),
                            (f"delete_{kind.lower()}_policy", delete_inline), (f"list_{kind.lower()}_policies", list_inline),
                            (f"list_attached_{kind.lower()}_policies", list_attached)):  # fmt: skip
            setattr(IamProvider, op, factory(kind))
        setattr(IamProvider, f"attach_{kind.lower()}_policy", attach(kind, True))
        setattr(IamProvider, f"detach_{kind.lower()}_policy", attach(kind, False))


_install()
