"""Secrets Manager: secrets with versions and staging labels, encrypted by KMS,
deleted after a recovery window."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets
import string
import uuid
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.aws.protocol.values import require_each
from nubes.services.base import Provider, RequestContext
from nubes.storage.base import Txn
from nubes.storage.keys import pack

SECRETS = "secretsmanager.secrets"
CURRENT, PREVIOUS, PENDING = "AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"
_SWEEP_SECONDS = 60.0


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def _not_found() -> AwsError:
    return AwsError("ResourceNotFoundException", "Secrets Manager can't find the specified secret.", 400)


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidRequestException", message, 400)


def _deleted_error(op: str) -> AwsError:
    return _invalid("You can't perform this operation on the secret because it was marked for deletion.")


class SecretsManagerProvider(Provider):
    """Secret records hold every version's encrypted value and its stages."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sweeper = self.app.spawn(self._sweep_forever(), name="secretsmanager-sweep")

    async def _sweep_forever(self) -> None:
        while True:
            await self.purge_due()
            await asyncio.sleep(_SWEEP_SECONDS)

    async def purge_due(self) -> int:
        """Delete secrets whose recovery window has ended."""
        now = _now()

        def purge(txn: Txn) -> int:
            gone = 0
            for key, raw in txn.scan(SECRETS):
                rec = orjson.loads(raw)
                if rec.get("PurgeAt") and rec["PurgeAt"] <= now:
                    txn.delete(SECRETS, key)
                    gone += 1
            return gone

        return await self.app.store.write(purge)

    # -- lookups ------------------------------------------------------------------

    async def _find(self, ctx: RequestContext, secret_id: str) -> tuple[bytes, dict[str, Any]]:
        region = ctx.region
        ref = secret_id
        if ref.startswith("arn:"):
            parts = ref.split(":")
            if len(parts) < 7:
                raise _not_found()
            region = parts[3]
            ref = ":".join(parts[6:])

        def find(txn: Txn) -> tuple[bytes, dict[str, Any]] | None:
            raw = txn.get(SECRETS, pack(region, ref))
            if raw is not None:
                return pack(region, ref), orjson.loads(raw)
            # a full ARN ends with -XXXXXX after the name; a partial ARN does not
            if secret_id.startswith("arn:") and len(ref) > 7 and ref[-7] == "-":
                raw = txn.get(SECRETS, pack(region, ref[:-7]))
                if raw is not None:
                    rec = orjson.loads(raw)
                    if rec["ARN"] == secret_id:
                        return pack(region, ref[:-7]), rec
            return None

        found = await self.app.store.read(find)
        if found is None:
            raise _not_found()
        return found

    async def _encrypt(self, ctx: RequestContext, rec: dict[str, Any], value: bytes) -> str:
        key = rec.get("KmsKeyId") or "alias/aws/secretsmanager"
        out = await self.app.call("kms", "Encrypt", {"KeyId": key, "Plaintext": value}, region=ctx.region)
        return base64.b64encode(out["CiphertextBlob"]).decode()

    async def _decrypt(self, ctx: RequestContext, blob: str) -> bytes:
        out = await self.app.call("kms", "Decrypt", {"CiphertextBlob": base64.b64decode(blob)}, region=ctx.region)
        plaintext: bytes = out["Plaintext"]
        return plaintext

    async def _new_version(self, ctx: RequestContext, rec: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
        """An encrypted version from SecretString/SecretBinary, or None if neither."""
        has_string = params.get("SecretString") is not None
        has_binary = params.get("SecretBinary") is not None
        if has_string and has_binary:
            raise _invalid("You can't specify both a binary secret value and a string secret value in the same secret.")
        if not has_string and not has_binary:
            return None
        raw: bytes = params["SecretString"].encode() if has_string else params["SecretBinary"]
        if len(raw) > 65536:
            raise _invalid("The secret value exceeds the maximum size of 65536 bytes.")
        return {"Kind": "string" if has_string else "binary", "Value": await self._encrypt(ctx, rec, raw), "CreatedDate": _now()}

    @staticmethod
    def _add_version(rec: dict[str, Any], version_id: str, version: dict[str, Any], stages: list[str]) -> None:
        versions: dict[str, Any] = rec.setdefault("Versions", {})
        if CURRENT in stages:
            for vid, v in versions.items():
                if CURRENT in v["Stages"]:
                    v["Stages"] = [s for s in v["Stages"] if s != CURRENT]
                    for other in versions.values():
                        other["Stages"] = [s for s in other["Stages"] if s != PREVIOUS]
                    v["Stages"].append(PREVIOUS)
                    rec["LastPrevious"] = vid
        for v in versions.values():
            v["Stages"] = [s for s in v["Stages"] if s not in stages or s in (PREVIOUS,)]
        version["Stages"] = list(stages)
        versions[version_id] = version
        # AWS keeps versions that have a stage, and removes staged-out ones beyond ~100
        unlabeled = [vid for vid, v in versions.items() if not v["Stages"]]
        for vid in unlabeled[:-100] if len(versions) > 100 else []:
            versions.pop(vid)

    # -- operations -----------------------------------------------------------------

    async def create_secret(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        require_each(params.get("Tags") or (), "Key", path="tags")
        name: str = params["Name"]
        suffix = "".join(secrets.choice(string.ascii_letters) for _ in range(6))
        now = _now()
        rec: dict[str, Any] = {
            "Name": name, "ARN": ctx.arn("secretsmanager", f"secret:{name}-{suffix}"),
            "Description": params.get("Description"), "KmsKeyId": params.get("KmsKeyId"),
            "Tags": [{"Key": t["Key"], "Value": t.get("Value", "")} for t in params.get("Tags") or ()], "CreatedDate": now, "LastChangedDate": now, "Versions": {},
        }  # fmt: skip
        version = await self._new_version(ctx, rec, params)
        version_id = params.get("ClientRequestToken") or str(uuid.uuid4())
        if version is not None:
            self._add_version(rec, version_id, version, [CURRENT])
        key = pack(ctx.region, name)

        def create(txn: Txn) -> dict[str, Any]:
            raw = txn.get(SECRETS, key)
            if raw is not None:
                existing = orjson.loads(raw)
                if existing.get("DeletedDate"):
                    raise _invalid("You can't create this secret because a secret with this name is already scheduled for deletion.")
                raise AwsError("ResourceExistsException", f"The operation failed because the secret {name} already exists.", 400)
            txn.put(SECRETS, key, orjson.dumps(rec))
            return rec

        await self.app.store.write(create)
        out: dict[str, Any] = {"ARN": rec["ARN"], "Name": name}
        if version is not None:
            out["VersionId"] = version_id
        return out

    async def _mutate(self, ctx: RequestContext, secret_id: str, change: Any) -> dict[str, Any]:
        key, _ = await self._find(ctx, secret_id)

        def update(txn: Txn) -> dict[str, Any]:
            raw = txn.get(SECRETS, key)
            if raw is None:
                raise _not_found()
            rec = orjson.loads(raw)
            result = change(rec)
            txn.put(SECRETS, key, orjson.dumps(rec))
            return result if isinstance(result, dict) else rec

        return await self.app.store.write(update)

    async def put_secret_value(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, rec = await self._find(ctx, params["SecretId"])
        if rec.get("DeletedDate"):
            raise _deleted_error("PutSecretValue")
        version = await self._new_version(ctx, rec, params)
        if version is None:
            raise _invalid("You must provide either SecretString or SecretBinary.")
        version_id = params.get("ClientRequestToken") or str(uuid.uuid4())
        stages = params.get("VersionStages") or [CURRENT]

        def change(r: dict[str, Any]) -> dict[str, Any]:
            existing = r.get("Versions", {}).get(version_id)
            if existing is not None:
                raise AwsError("ResourceExistsException", "A resource with the ID you requested already exists.", 400)
            self._add_version(r, version_id, version, stages)
            r["LastChangedDate"] = _now()
            return {"ARN": r["ARN"], "Name": r["Name"], "VersionId": version_id, "VersionStages": stages}

        return await self._mutate(ctx, params["SecretId"], change)

    async def update_secret(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, rec = await self._find(ctx, params["SecretId"])
        if rec.get("DeletedDate"):
            raise _deleted_error("UpdateSecret")
        if params.get("KmsKeyId"):
            rec["KmsKeyId"] = params["KmsKeyId"]
        version = await self._new_version(ctx, rec, params)
        version_id = params.get("ClientRequestToken") or str(uuid.uuid4())

        def change(r: dict[str, Any]) -> dict[str, Any]:
            for field in ("Description", "KmsKeyId"):
                if params.get(field) is not None:
                    r[field] = params[field]
            out = {"ARN": r["ARN"], "Name": r["Name"]}
            if version is not None:
                self._add_version(r, version_id, version, [CURRENT])
                out["VersionId"] = version_id
            r["LastChangedDate"] = _now()
            return out

        return await self._mutate(ctx, params["SecretId"], change)

    async def get_secret_value(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, rec = await self._find(ctx, params["SecretId"])
        if rec.get("DeletedDate"):
            raise _deleted_error("GetSecretValue")
        version_id, version = self._pick_version(rec, params.get("VersionId"), params.get("VersionStage"))
        value = await self._decrypt(ctx, version["Value"])
        out: dict[str, Any] = {
            "ARN": rec["ARN"], "Name": rec["Name"], "VersionId": version_id,
            "VersionStages": version["Stages"], "CreatedDate": version["CreatedDate"],
        }  # fmt: skip
        if version["Kind"] == "string":
            out["SecretString"] = value.decode()
        else:
            out["SecretBinary"] = value
        return out

    @staticmethod
    def _pick_version(rec: dict[str, Any], version_id: str | None, stage: str | None) -> tuple[str, dict[str, Any]]:
        versions: dict[str, Any] = rec.get("Versions", {})
        if version_id is not None:
            version = versions.get(version_id)
            if version is None or (stage is not None and stage not in version["Stages"]):
                raise AwsError("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for VersionId: " + version_id, 400)
            return version_id, version
        wanted = stage or CURRENT
        for vid, version in versions.items():
            if wanted in version["Stages"]:
                return vid, version
        raise AwsError("ResourceNotFoundException", f"Secrets Manager can't find the specified secret value for staging label: {wanted}", 400)

    async def batch_get_secret_value(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ids = list(params.get("SecretIdList") or [])
        if not ids and params.get("Filters"):
            listed = await self.list_secrets(ctx, {"Filters": params["Filters"], "MaxResults": 20})
            ids = [s["ARN"] for s in listed["SecretList"]]
        values, errors = [], []
        for sid in ids:
            try:
                values.append(await self.get_secret_value(ctx, {"SecretId": sid}))
            except AwsError as err:
                errors.append({"SecretId": sid, "ErrorCode": err.code, "Message": err.message})
        return {"SecretValues": values, "Errors": errors}

    def _describe(self, rec: dict[str, Any]) -> dict[str, Any]:
        out = {k: rec.get(k) for k in ("ARN", "Name", "Description", "KmsKeyId", "CreatedDate", "LastChangedDate", "DeletedDate", "RotationEnabled", "RotationLambdaARN", "RotationRules", "LastRotatedDate")}
        out["Tags"] = rec.get("Tags") or None
        out["VersionIdsToStages"] = {vid: v["Stages"] for vid, v in rec.get("Versions", {}).items() if v["Stages"]}
        return {k: v for k, v in out.items() if v is not None}

    async def describe_secret(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, rec = await self._find(ctx, params["SecretId"])
        return self._describe(rec)

    async def list_secrets(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        require_each(params.get("Filters") or (), "Key", path="filters")
        rows = await self.app.store.read(lambda txn: txn.scan(SECRETS, prefix=pack(ctx.region)))
        records = [orjson.loads(v) for _, v in rows]
        if not params.get("IncludePlannedDeletion"):
            records = [r for r in records if not r.get("DeletedDate")]
        for f in params.get("Filters") or []:
            records = [r for r in records if _filter_matches(r, f)]
        if params.get("SortOrder") == "desc":
            records.reverse()
        limit = int(params.get("MaxResults") or 100)
        start = int(params["NextToken"]) if str(params.get("NextToken", "")).isdigit() else 0
        page = records[start : start + limit]
        out: dict[str, Any] = {"SecretList": [self._describe(r) for r in page]}
        for item, rec in zip(out["SecretList"], page, strict=True):
            item["SecretVersionsToStages"] = item.pop("VersionIdsToStages", {})
            del rec
        if start + limit < len(records):
            out["NextToken"] = str(start + limit)
        return out

    async def list_secret_version_ids(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, rec = await self._find(ctx, params["SecretId"])
        versions = [
            {"VersionId": vid, "VersionStages": v["Stages"], "CreatedDate": v["CreatedDate"]}
            for vid, v in rec.get("Versions", {}).items()
            if v["Stages"] or params.get("IncludeDeprecated")
        ]
        return {"ARN": rec["ARN"], "Name": rec["Name"], "Versions": versions}

    async def update_secret_version_stage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stage: str = params["VersionStage"]
        move_to = params.get("MoveToVersionId")
        remove_from = params.get("RemoveFromVersionId")

        def change(r: dict[str, Any]) -> dict[str, Any]:
            versions = r.get("Versions", {})
            for vid in (move_to, remove_from):
                if vid is not None and vid not in versions:
                    raise AwsError("ResourceNotFoundException", f"Secrets Manager can't find the specified secret value for VersionId: {vid}", 400)
            holder = next((vid for vid, v in versions.items() if stage in v["Stages"]), None)
            if holder is not None and holder != remove_from and move_to is not None and holder != move_to:
                raise _invalid(f"The staging label {stage} is currently attached to version {holder}, so you must explicitly reference that version in RemoveFromVersionId.")
            if remove_from is not None:
                versions[remove_from]["Stages"] = [s for s in versions[remove_from]["Stages"] if s != stage]
            if move_to is not None:
                if stage == CURRENT and holder is not None and holder != move_to:
                    for v in versions.values():
                        v["Stages"] = [s for s in v["Stages"] if s != PREVIOUS]
                    versions[holder]["Stages"] = [s for s in versions[holder]["Stages"] if s != CURRENT] + [PREVIOUS]
                if stage not in versions[move_to]["Stages"]:
                    versions[move_to]["Stages"].append(stage)
            return {"ARN": r["ARN"], "Name": r["Name"]}

        return await self._mutate(ctx, params["SecretId"], change)

    async def delete_secret(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        force = bool(params.get("ForceDeleteWithoutRecovery"))
        window = params.get("RecoveryWindowInDays")
        if force and window is not None:
            raise _invalid("You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.")
        days = int(window or 30)
        if not 7 <= days <= 30:
            raise _invalid("The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
        key, rec = await self._find(ctx, params["SecretId"])
        now = _now()
        if force:
            await self.app.store.write(lambda txn: txn.delete(SECRETS, key))
            return {"ARN": rec["ARN"], "Name": rec["Name"], "DeletionDate": now}

        def change(r: dict[str, Any]) -> dict[str, Any]:
            if r.get("DeletedDate"):
                raise _deleted_error("DeleteSecret")
            r["DeletedDate"] = now
            r["PurgeAt"] = now + days * 86400
            return {"ARN": r["ARN"], "Name": r["Name"], "DeletionDate": r["PurgeAt"]}

        return await self._mutate(ctx, params["SecretId"], change)

    async def restore_secret(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(r: dict[str, Any]) -> dict[str, Any]:
            r.pop("DeletedDate", None)
            r.pop("PurgeAt", None)
            return {"ARN": r["ARN"], "Name": r["Name"]}

        return await self._mutate(ctx, params["SecretId"], change)

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        require_each(params["Tags"], "Key", path="tags")

        def change(r: dict[str, Any]) -> None:
            tags = {t["Key"]: t["Value"] for t in r.get("Tags", [])}
            tags.update({t["Key"]: t.get("Value", "") for t in params["Tags"]})
            r["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]

        await self._mutate(ctx, params["SecretId"], change)
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(r: dict[str, Any]) -> None:
            r["Tags"] = [t for t in r.get("Tags", []) if t["Key"] not in set(params["TagKeys"])]

        await self._mutate(ctx, params["SecretId"], change)
        return {}

    async def get_random_password(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        length = int(params.get("PasswordLength") or 32)
        pools: list[str] = []
        if not params.get("ExcludeLowercase"):
            pools.append(string.ascii_lowercase)
        if not params.get("ExcludeUppercase"):
            pools.append(string.ascii_uppercase)
        if not params.get("ExcludeNumbers"):
            pools.append(string.digits)
        if not params.get("ExcludePunctuation"):
            pools.append("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
        if params.get("IncludeSpace"):
            pools.append(" ")
        excluded = set(params.get("ExcludeCharacters") or "")
        pools = ["".join(c for c in pool if c not in excluded) for pool in pools]
        pools = [p for p in pools if p]
        if not pools:
            raise _invalid("The password cannot be generated: every character class is excluded.")
        if params.get("RequireEachIncludedType", True) and length < len(pools):
            raise _invalid("The password length is too short to include every required character type.")
        chars = [secrets.choice(pool) for pool in pools] if params.get("RequireEachIncludedType", True) else []
        alphabet = "".join(pools)
        chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
        secrets.SystemRandom().shuffle(chars)
        return {"RandomPassword": "".join(chars)}

    async def rotate_secret(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Run the rotation function's four steps, as Secrets Manager does."""
        _, rec = await self._find(ctx, params["SecretId"])
        lambda_arn = params.get("RotationLambdaARN") or rec.get("RotationLambdaARN")
        if not lambda_arn:
            raise _invalid("No Lambda rotation function ARN is associated with this secret.")
        token = params.get("ClientRequestToken") or str(uuid.uuid4())

        def configure(r: dict[str, Any]) -> None:
            r.update(RotationEnabled=True, RotationLambdaARN=lambda_arn)
            if params.get("RotationRules"):
                r["RotationRules"] = params["RotationRules"]

        await self._mutate(ctx, params["SecretId"], configure)
        if params.get("RotateImmediately", True):
            for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
                event = {"Step": step, "SecretId": rec["ARN"], "ClientRequestToken": token}
                out = await self.app.call("lambda", "Invoke", {"FunctionName": lambda_arn, "Payload": orjson.dumps(event)}, region=ctx.region)
                if out.get("FunctionError"):
                    raise _invalid(f"The rotation function failed in step {step}: {out.get('Payload', b'')!r}")
            await self._mutate(ctx, params["SecretId"], lambda r: r.update(LastRotatedDate=_now()))
        return {"ARN": rec["ARN"], "Name": rec["Name"], "VersionId": token}


def _filter_matches(rec: dict[str, Any], f: dict[str, Any]) -> bool:
    key = f["Key"]
    values: list[str] = f.get("Values") or []

    def test(candidate: str | None) -> bool:
        if candidate is None:
            return False
        for value in values:
            negate = value.startswith("!")
            needle = value[1:] if negate else value
            hit = candidate.lower().startswith(needle.lower())
            if hit != negate:
                return True
        return False

    if key == "name":
        return test(rec["Name"])
    if key == "description":
        return test(rec.get("Description"))
    if key == "tag-key":
        return any(test(t["Key"]) for t in rec.get("Tags", []))
    if key == "tag-value":
        return any(test(t["Value"]) for t in rec.get("Tags", []))
    if key == "all":
        return test(rec["Name"]) or test(rec.get("Description")) or any(test(t["Key"]) or test(t["Value"]) for t in rec.get("Tags", []))
    if key == "primary-region":
        return True
    raise AwsError("ValidationException", f"Invalid filter key: {key}", 400)
