"""SSM Parameter Store: parameters with versions, labels, hierarchies and
SecureStrings encrypted through KMS."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import Provider, RequestContext
from nubes.storage.base import Txn
from nubes.storage.keys import pack, prefix_end

PARAMETERS = "ssm.parameters"
HISTORY = "ssm.history"
_MAX_LABELS = 10
_LABEL = re.compile(r"^(?![aA][wW][sS]|[sS][sS][mM])(?![0-9])[a-zA-Z0-9_.\-]{1,100}$")
_NAME = re.compile(r"^[a-zA-Z0-9_.\-/]+$")


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def _validation(message: str) -> AwsError:
    return AwsError("ValidationException", message, 400)


def _check_name(name: str) -> None:
    bare = name.lstrip("/")
    if bare.lower().startswith(("aws", "ssm")):
        raise _validation(
            f'No access to reserved parameter name: {name}. Parameter name: can\'t be prefixed with "aws" or "ssm" (case-insensitive).'
        )
    if not _NAME.match(name) or "//" in name or (name.count("/") and not name.startswith("/")):
        raise _validation(
            f"Parameter name: {name} is invalid. A parameter name must be a fully qualified name "
            "starting with a forward slash (/) when it contains slashes, and may contain only "
            "letters, numbers and the symbols .-_/"
        )
    if name.count("/") > 15:
        raise AwsError("HierarchyLevelLimitExceededException", "Parameter name hierarchy has more than 15 levels", 400)


def _split_selector(name: str) -> tuple[str, str | None]:
    """``/a/b:3`` or ``/a/b:label`` → (name, selector)."""
    base, sep, selector = name.rpartition(":")
    if sep and base and not base.startswith("arn"):
        return base, selector
    return name, None


def _strip_arn(name: str) -> str:
    if name.startswith("arn:"):
        resource = name.split(":", 5)[5]
        rest = resource[len("parameter") :]
        return rest if rest.startswith("/") and rest.count("/") > 1 else rest.lstrip("/")
    return name


class SsmProvider(Provider):
    """Parameter Store operations."""

    def _arn(self, ctx: RequestContext, name: str) -> str:
        return ctx.arn("ssm", "parameter/" + name.lstrip("/"))

    async def _encrypt(self, ctx: RequestContext, key_id: str, value: str) -> str:
        out = await self.app.call("kms", "Encrypt", {"KeyId": key_id, "Plaintext": value.encode()}, region=ctx.region)
        return base64.b64encode(out["CiphertextBlob"]).decode()

    async def _decrypt(self, ctx: RequestContext, blob: str) -> str:
        out = await self.app.call("kms", "Decrypt", {"CiphertextBlob": base64.b64decode(blob)}, region=ctx.region)
        plaintext: bytes = out["Plaintext"]
        return plaintext.decode()

    async def _public(self, ctx: RequestContext, rec: dict[str, Any], decrypt: bool, selector: str | None = None) -> dict[str, Any]:
        value = rec["Value"]
        if rec["Type"] == "SecureString" and decrypt:
            value = await self._decrypt(ctx, value)
        return self._public_with(ctx, rec, value, selector)

    def _public_with(self, ctx: RequestContext, rec: dict[str, Any], value: str, selector: str | None) -> dict[str, Any]:
        out = {
            "Name": rec["Name"], "Type": rec["Type"], "Value": value, "Version": rec["Version"],
            "LastModifiedDate": rec["LastModifiedDate"], "ARN": self._arn(ctx, rec["Name"]),
            "DataType": rec.get("DataType", "text"),
        }  # fmt: skip
        if selector is not None:
            out["Selector"] = f":{selector}"
        return out

    # -- writes -------------------------------------------------------------------

    async def put_parameter(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name: str = params["Name"]
        _check_name(name)
        value: str = params["Value"]
        tier = params.get("Tier") or "Standard"
        if tier == "Intelligent-Tiering":
            tier = "Advanced" if len(value) > 4096 else "Standard"
        limit = 8192 if tier == "Advanced" else 4096
        if len(value) > limit:
            raise _validation(
                f"1 validation error detected: Value '{value[:20]}...' at 'value' failed to satisfy constraint: "
                f"Member must have length less than or equal to {limit}"
            )
        if params.get("Tags") and params.get("Overwrite"):
            raise _validation("Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.")
        pattern = params.get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, value):
            raise AwsError("ParameterPatternMismatchException", f"Parameter value, {value}, failed to satisfy constraint specified in allowed pattern: {pattern}", 400)
        kind = params.get("Type")
        key_id = params.get("KeyId")
        stored_value = value
        if kind == "SecureString":
            key_id = key_id or "alias/aws/ssm"
            stored_value = await self._encrypt(ctx, key_id, value)
        elif key_id:
            raise _validation("KeyId is required for SecureString type parameter only.")
        now = _now()
        key = pack(ctx.region, name)

        def put(txn: Txn) -> int:
            raw = txn.get(PARAMETERS, key)
            if raw is not None:
                old = orjson.loads(raw)
                if not params.get("Overwrite"):
                    raise AwsError("ParameterAlreadyExists", "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.", 400)
                if kind and kind != old["Type"]:
                    raise _validation("The parameter type can't be changed. You must delete the parameter and recreate it with the new type.")
                if old["Version"] >= 100 and txn.count(HISTORY, prefix=pack(ctx.region, name)) >= 100:
                    oldest = txn.scan(HISTORY, prefix=pack(ctx.region, name), limit=1)
                    if orjson.loads(oldest[0][1]).get("Labels"):
                        raise AwsError("ParameterMaxVersionLimitExceeded", f"You attempted to create a new version of {name} by calling the PutParameter API with the overwrite flag. Version {orjson.loads(oldest[0][1])['Version']}, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.", 400)
                    txn.delete(HISTORY, oldest[0][0])
                rec = {**old, "Version": old["Version"] + 1}
            else:
                if not kind:
                    raise _validation("A parameter type is required when you create a parameter.")
                rec = {"Name": name, "Type": kind, "Version": 1, "Tags": params.get("Tags") or []}
            rec.update(
                Value=stored_value, LastModifiedDate=now, Tier=tier,
                DataType=params.get("DataType") or rec.get("DataType") or "text",
                LastModifiedUser=f"arn:aws:iam::{ctx.account_id}:root",
            )  # fmt: skip
            for field in ("Description", "AllowedPattern"):
                if field in params:
                    rec[field] = params[field]
            if kind == "SecureString" or rec["Type"] == "SecureString":
                rec["KeyId"] = key_id or rec.get("KeyId") or "alias/aws/ssm"
            txn.put(PARAMETERS, key, orjson.dumps(rec))
            hist = {k: v for k, v in rec.items() if k != "Tags"}
            hist["Labels"] = []
            txn.put(HISTORY, pack(ctx.region, name, rec["Version"]), orjson.dumps(hist))
            return int(rec["Version"])

        version = await self.app.store.write(put)
        return {"Version": version, "Tier": tier}

    async def delete_parameter(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = _strip_arn(params["Name"])

        def delete(txn: Txn) -> bool:
            if not txn.delete(PARAMETERS, pack(ctx.region, name)):
                return False
            txn.delete_prefix(HISTORY, pack(ctx.region, name))
            return True

        if not await self.app.store.write(delete):
            raise AwsError("ParameterNotFound", f"Parameter {name} not found.", 400)
        return {}

    async def delete_parameters(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        names = [_strip_arn(n) for n in params["Names"]]

        def delete(txn: Txn) -> tuple[list[str], list[str]]:
            deleted, invalid = [], []
            for name in names:
                if txn.delete(PARAMETERS, pack(ctx.region, name)):
                    txn.delete_prefix(HISTORY, pack(ctx.region, name))
                    deleted.append(name)
                else:
                    invalid.append(name)
            return deleted, invalid

        deleted, invalid = await self.app.store.write(delete)
        return {"DeletedParameters": deleted, "InvalidParameters": invalid}

    # -- reads --------------------------------------------------------------------

    async def _lookup(self, ctx: RequestContext, ref: str) -> tuple[dict[str, Any], str | None] | None:
        name, selector = _split_selector(_strip_arn(ref))

        def read(txn: Txn) -> dict[str, Any] | None:
            if selector is None:
                raw = txn.get(PARAMETERS, pack(ctx.region, name))
                return orjson.loads(raw) if raw is not None else None
            if selector.isdigit():
                raw = txn.get(HISTORY, pack(ctx.region, name, int(selector)))
                if raw is None:
                    if txn.get(PARAMETERS, pack(ctx.region, name)) is not None:
                        raise AwsError("ParameterVersionNotFound", f"Systems Manager could not find version {selector} of {name}. Verify the version and try again.", 400)
                    return None
                return dict(orjson.loads(raw))
            for _, raw in txn.scan(HISTORY, prefix=pack(ctx.region, name)):
                rec = orjson.loads(raw)
                if selector in rec.get("Labels", []):
                    return dict(rec)
            if txn.get(PARAMETERS, pack(ctx.region, name)) is not None:
                raise AwsError("ParameterVersionLabelNotFound", f"Systems Manager could not find label {selector} of {name}. Verify the label and try again.", 400)
            return None

        rec = await self.app.store.read(read)
        return (rec, selector) if rec is not None else None

    async def get_parameter(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        found = await self._lookup(ctx, params["Name"])
        if found is None:
            raise AwsError("ParameterNotFound", f"Parameter {_split_selector(_strip_arn(params['Name']))[0]} not found.", 400)
        rec, selector = found
        if rec["Type"] != "SecureString":  # nothing to decrypt: no coroutine for it
            return {"Parameter": self._public_with(ctx, rec, rec["Value"], selector)}
        return {"Parameter": await self._public(ctx, rec, bool(params.get("WithDecryption")), selector)}

    async def get_parameters(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        found, invalid = [], []
        for ref in dict.fromkeys(params["Names"]):
            try:
                hit = await self._lookup(ctx, ref)
            except AwsError:
                hit = None
            if hit is None:
                invalid.append(ref)
            else:
                found.append(await self._public(ctx, hit[0], bool(params.get("WithDecryption")), hit[1]))
        return {"Parameters": found, "InvalidParameters": invalid}

    async def get_parameters_by_path(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        path: str = params["Path"]
        if not path.startswith("/"):
            raise _validation("The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\". It can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). It must use only letters, numbers, or the following symbols: . (period), - (hyphen), _ (underscore). Special characters are not allowed. All sub-paths, if specified, must use the forward slash symbol \"/\". Valid example: /get/parameters2-/by1./path0_.")
        prefix = path if path.endswith("/") else path + "/"
        recursive = bool(params.get("Recursive"))
        limit = int(params.get("MaxResults") or 10)
        # a string part's encoding ends with a 2-byte terminator: drop it to get the
        # key prefix every name starting with ``prefix`` shares
        name_prefix = pack(ctx.region, prefix)[:-2]
        start = pack(ctx.region, params["NextToken"]) if params.get("NextToken") else name_prefix
        filters = params.get("ParameterFilters") or []

        def scan(txn: Txn) -> tuple[list[dict[str, Any]], str | None]:
            out: list[dict[str, Any]] = []
            end = prefix_end(name_prefix)
            cursor = start
            while True:
                rows = txn.scan(PARAMETERS, start=cursor, end=end, limit=200)
                if not rows:
                    return out, None
                for key, raw in rows:
                    rec = orjson.loads(raw)
                    name: str = rec["Name"]
                    if key == cursor and params.get("NextToken"):
                        continue
                    if not name.startswith(prefix) or (not recursive and "/" in name[len(prefix):]):
                        continue
                    if not _matches_filters(rec, filters):
                        continue
                    out.append(rec)
                    if len(out) == limit:
                        return out, name
                cursor = rows[-1][0] + b"\x00"

        records, next_name = await self.app.store.read(scan)
        result: dict[str, Any] = {
            "Parameters": [await self._public(ctx, r, bool(params.get("WithDecryption"))) for r in records]
        }
        if next_name is not None:
            result["NextToken"] = next_name
        return result

    async def describe_parameters(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        limit = int(params.get("MaxResults") or 50)
        filters = list(params.get("ParameterFilters") or [])
        for f in params.get("Filters") or []:
            filters.append({"Key": f["Key"], "Option": "Equals", "Values": f["Values"]})
        rows = await self.app.store.read(lambda txn: txn.scan(PARAMETERS, prefix=pack(ctx.region)))
        records = [r for r in (orjson.loads(v) for _, v in rows) if _matches_filters(r, filters)]
        start = int(params["NextToken"]) if str(params.get("NextToken", "")).isdigit() else 0
        page = records[start : start + limit]
        out: dict[str, Any] = {"Parameters": [_metadata(ctx, self._arn(ctx, r["Name"]), r) for r in page]}
        if start + limit < len(records):
            out["NextToken"] = str(start + limit)
        return out

    async def get_parameter_history(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = _strip_arn(params["Name"])
        rows = await self.app.store.read(lambda txn: txn.scan(HISTORY, prefix=pack(ctx.region, name)))
        if not rows:
            raise AwsError("ParameterNotFound", f"Parameter {name} not found.", 400)
        decrypt = bool(params.get("WithDecryption"))
        limit = int(params.get("MaxResults") or 50)
        start = int(params["NextToken"]) if str(params.get("NextToken", "")).isdigit() else 0
        history = []
        for _, raw in rows[start : start + limit]:
            rec = orjson.loads(raw)
            item = _metadata(ctx, self._arn(ctx, name), rec)
            item.pop("ARN", None)
            value = rec["Value"]
            if rec["Type"] == "SecureString" and decrypt:
                value = await self._decrypt(ctx, value)
            item.update(Value=value, Labels=rec.get("Labels", []))
            history.append(item)
        out: dict[str, Any] = {"Parameters": history}
        if start + limit < len(rows):
            out["NextToken"] = str(start + limit)
        return out

    # -- labels -------------------------------------------------------------------

    async def label_parameter_version(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = _strip_arn(params["Name"])
        labels: list[str] = params["Labels"]
        invalid = [label for label in labels if not _LABEL.match(label)]
        valid = [label for label in labels if label not in invalid]

        def label(txn: Txn) -> int:
            current = txn.get(PARAMETERS, pack(ctx.region, name))
            if current is None:
                raise AwsError("ParameterNotFound", f"Parameter {name} not found.", 400)
            version = int(params.get("ParameterVersion") or orjson.loads(current)["Version"])
            key = pack(ctx.region, name, version)
            raw = txn.get(HISTORY, key)
            if raw is None:
                raise AwsError("ParameterVersionNotFound", f"Systems Manager could not find version {version} of {name}. Verify the version and try again.", 400)
            target = orjson.loads(raw)
            for other_key, other_raw in txn.scan(HISTORY, prefix=pack(ctx.region, name)):
                other = orjson.loads(other_raw)
                kept = [x for x in other.get("Labels", []) if x not in valid]
                if other_key != key and kept != other.get("Labels", []):
                    other["Labels"] = kept
                    txn.put(HISTORY, other_key, orjson.dumps(other))
            merged = list(dict.fromkeys([*target.get("Labels", []), *valid]))
            if len(merged) > _MAX_LABELS:
                raise AwsError("ParameterVersionLabelLimitExceeded", "An error occurred when attempting to label the parameter version. A parameter version can have a maximum of 10 labels.", 400)
            target["Labels"] = merged
            txn.put(HISTORY, key, orjson.dumps(target))
            return version

        version = await self.app.store.write(label)
        return {"InvalidLabels": invalid, "ParameterVersion": version}

    async def unlabel_parameter_version(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = _strip_arn(params["Name"])
        version = int(params["ParameterVersion"])
        labels: list[str] = params["Labels"]

        def unlabel(txn: Txn) -> tuple[list[str], list[str]]:
            key = pack(ctx.region, name, version)
            raw = txn.get(HISTORY, key)
            if raw is None:
                if txn.get(PARAMETERS, pack(ctx.region, name)) is None:
                    raise AwsError("ParameterNotFound", f"Parameter {name} not found.", 400)
                raise AwsError("ParameterVersionNotFound", f"Systems Manager could not find version {version} of {name}. Verify the version and try again.", 400)
            rec = orjson.loads(raw)
            present = [x for x in labels if x in rec.get("Labels", [])]
            rec["Labels"] = [x for x in rec.get("Labels", []) if x not in labels]
            txn.put(HISTORY, key, orjson.dumps(rec))
            return present, [x for x in labels if x not in present]

        removed, invalid = await self.app.store.write(unlabel)
        return {"RemovedLabels": removed, "InvalidLabels": invalid}

    # -- tags ---------------------------------------------------------------------

    async def _retag(self, ctx: RequestContext, params: dict[str, Any], change: Any) -> list[dict[str, str]]:
        if params["ResourceType"] != "Parameter":
            raise AwsError("InvalidResourceType", f"nubes SSM tags parameters only, not {params['ResourceType']}", 400)
        name = _strip_arn(params["ResourceId"])

        def update(txn: Txn) -> list[dict[str, str]]:
            raw = txn.get(PARAMETERS, pack(ctx.region, name))
            if raw is None:
                raise AwsError("InvalidResourceId", "", 400)
            rec = orjson.loads(raw)
            tags = {t["Key"]: t["Value"] for t in rec.get("Tags", [])}
            if change is not None:
                change(tags)
                rec["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
                txn.put(PARAMETERS, pack(ctx.region, name), orjson.dumps(rec))
            return list(rec.get("Tags", []))

        return await (self.app.store.write(update) if change is not None else self.app.store.read(update))

    async def add_tags_to_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._retag(ctx, params, lambda tags: tags.update({t["Key"]: t["Value"] for t in params["Tags"]}))
        return {}

    async def remove_tags_from_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def drop(tags: dict[str, str]) -> None:
            for key in params["TagKeys"]:
                tags.pop(key, None)

        await self._retag(ctx, params, drop)
        return {}

    async def list_tags_for_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"TagList": await self._retag(ctx, params, None)}


def _metadata(ctx: RequestContext, arn: str, rec: dict[str, Any]) -> dict[str, Any]:
    out = {
        "Name": rec["Name"], "ARN": arn, "Type": rec["Type"], "Version": rec["Version"],
        "LastModifiedDate": rec["LastModifiedDate"], "LastModifiedUser": rec.get("LastModifiedUser"),
        "Tier": rec.get("Tier", "Standard"), "DataType": rec.get("DataType", "text"), "Policies": [],
    }  # fmt: skip
    for field in ("Description", "KeyId", "AllowedPattern"):
        if rec.get(field):
            out[field] = rec[field]
    return out


def _matches_filters(rec: dict[str, Any], filters: list[dict[str, Any]]) -> bool:
    """ParameterFilters: Name/Type/KeyId/Label/Path/tag:Key with Equals/BeginsWith/Contains/OneLevel/Recursive."""
    for f in filters:
        key: str = f["Key"]
        option = f.get("Option") or "Equals"
        values = f.get("Values") or []
        if key.startswith("tag:"):
            tags = {t["Key"]: t["Value"] for t in rec.get("Tags", [])}
            tag = key[4:]
            if tag not in tags or (values and tags[tag] not in values):
                return False
            continue
        if key == "Path":
            name: str = rec["Name"]
            ok = False
            for value in values:
                base = value if value.endswith("/") else value + "/"
                if name.startswith(base) and (option == "Recursive" or "/" not in name[len(base):]):
                    ok = True
            if not ok:
                return False
            continue
        field = {"Name": "Name", "Type": "Type", "KeyId": "KeyId", "DataType": "DataType", "Tier": "Tier"}.get(key)
        if field is None:
            raise AwsError("InvalidFilterKey", f"The following filter key is not valid: {key}", 400)
        actual = str(rec.get(field, ""))
        if key == "Name" and not actual.startswith("/") and values and values[0].startswith("/"):
            actual = "/" + actual
        if option == "BeginsWith":
            ok = any(actual.startswith(v) for v in values)
        elif option == "Contains":
            ok = any(v in actual for v in values)
        else:
            ok = actual in values
        if not ok:
            return False
    return True
