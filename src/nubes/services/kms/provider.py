"""KMS operations: symmetric keys, aliases, Encrypt/Decrypt/GenerateDataKey."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import uuid
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.aws.protocol.values import require
from nubes.services.base import Provider, RequestContext
from nubes.services.kms import crypto
from nubes.storage.base import Txn
from nubes.storage.keys import pack

KEYS = "kms.keys"
ALIASES = "kms.aliases"
#: the cluster-wide master key, for stores shared by several nodes
MASTER = "kms.master"
_ALGORITHMS = ["SYMMETRIC_DEFAULT"]


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def _page(items: list[dict[str, Any]], params: dict[str, Any], limit_default: int = 100) -> dict[str, Any]:
    """Marker/Limit paging as KMS does it (``NextMarker``, ``Truncated``)."""
    start = int(params["Marker"]) if str(params.get("Marker", "")).isdigit() else 0
    limit = int(params.get("Limit") or limit_default)
    chunk = items[start : start + limit]
    truncated = start + limit < len(items)
    out: dict[str, Any] = {"Truncated": truncated}
    if truncated:
        out["NextMarker"] = str(start + limit)
    return {"items": chunk, **out}


class KmsProvider(Provider):
    """Keys live in the store with their material wrapped by the master key."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self._master: crypto.MasterKey | None = None
        self._materials: dict[str, bytes] = {}

    async def start(self) -> None:
        if self.app.store.backend == "sqlite":
            self._master = crypto.MasterKey(self.app.settings.data_dir)
            return
        candidate = secrets.token_bytes(32)

        def shared(txn: Txn) -> bytes:
            txn.insert(MASTER, b"master", candidate)
            key = txn.get(MASTER, b"master")
            assert key is not None
            return key

        self._master = crypto.MasterKey.from_bytes(await self.app.store.write(shared))

    @property
    def master(self) -> crypto.MasterKey:
        if self._master is None:
            self._master = crypto.MasterKey(self.app.settings.data_dir)
        return self._master

    # -- key records ------------------------------------------------------------

    def _new_key(self, ctx: RequestContext, params: dict[str, Any], manager: str = "CUSTOMER") -> dict[str, Any]:
        key_id = str(uuid.uuid4())
        spec = params.get("KeySpec") or params.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
        usage = params.get("KeyUsage") or "ENCRYPT_DECRYPT"
        if spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT":
            raise AwsError(
                "UnsupportedOperationException",
                f"nubes KMS supports symmetric ENCRYPT_DECRYPT keys only, not {spec}/{usage}",
                400,
            )
        material = secrets.token_bytes(32)
        return {
            "AWSAccountId": ctx.account_id,
            "KeyId": key_id,
            "Arn": ctx.arn("kms", f"key/{key_id}"),
            "CreationDate": _now(),
            "Enabled": True,
            "Description": params.get("Description", ""),
            "KeyUsage": usage,
            "KeyState": "Enabled",
            "Origin": params.get("Origin") or "AWS_KMS",
            "KeyManager": manager,
            "CustomerMasterKeySpec": spec,
            "KeySpec": spec,
            "EncryptionAlgorithms": _ALGORITHMS,
            "MultiRegion": bool(params.get("MultiRegion", False)),
            "Tags": params.get("Tags") or [],
            "Material": base64.b64encode(self.master.wrap(key_id, material)).decode(),
        }

    @staticmethod
    def _metadata(record: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in record.items() if k not in ("Material", "Tags")}
        return meta

    async def _resolve(self, ctx: RequestContext, key_ref: str, *, create_managed: bool = True) -> dict[str, Any]:
        """A key record by id, key ARN, alias name or alias ARN."""
        region = ctx.region
        ref = key_ref
        if ref.startswith("arn:"):
            parts = ref.split(":", 5)
            if len(parts) == 6:
                region = parts[3] or region
                ref = parts[5]
        if ref.startswith("key/"):
            ref = ref[4:]
        if ref.startswith("alias/"):
            alias_name = ref

            def find_alias(txn: Txn) -> dict[str, Any] | None:
                raw = txn.get(ALIASES, pack(region, alias_name))
                if raw is None:
                    return None
                alias = orjson.loads(raw)
                key = txn.get(KEYS, pack(region, alias["TargetKeyId"]))
                return orjson.loads(key) if key is not None else None

            record = await self.app.store.read(find_alias)
            if record is None and create_managed and alias_name.startswith("alias/aws/"):
                record = await self._create_managed(ctx, region, alias_name)
            if record is None:
                raise AwsError("NotFoundException", f"Alias {ctx.arn('kms', alias_name, region=region)} is not found.", 400)
            return record
        raw = await self.app.store.read(lambda txn: txn.get(KEYS, pack(region, ref)))
        if raw is None:
            raise AwsError("NotFoundException", f"Key '{ctx.arn('kms', 'key/' + ref, region=region)}' does not exist", 400)
        return dict(orjson.loads(raw))

    async def _create_managed(self, ctx: RequestContext, region: str, alias_name: str) -> dict[str, Any]:
        """AWS managed keys (``alias/aws/ssm``, ...) exist as soon as they are used."""
        record = self._new_key(ctx, {"Description": f"Default key for {alias_name[10:]}"}, manager="AWS")
        now = _now()

        def create(txn: Txn) -> dict[str, Any]:
            raw = txn.get(ALIASES, pack(region, alias_name))
            if raw is not None:  # created concurrently
                existing = txn.get(KEYS, pack(region, orjson.loads(raw)["TargetKeyId"]))
                assert existing is not None
                return dict(orjson.loads(existing))
            txn.put(KEYS, pack(region, record["KeyId"]), orjson.dumps(record))
            alias = {"AliasName": alias_name, "AliasArn": ctx.arn("kms", alias_name, region=region),
                     "TargetKeyId": record["KeyId"], "CreationDate": now, "LastUpdatedDate": now}  # fmt: skip
            txn.put(ALIASES, pack(region, alias_name), orjson.dumps(alias))
            return record

        return await self.app.store.write(create)

    async def _save(self, ctx: RequestContext, record: dict[str, Any]) -> None:
        region = record["Arn"].split(":")[3]
        await self.app.store.write(lambda txn: txn.put(KEYS, pack(region, record["KeyId"]), orjson.dumps(record)))

    def _material(self, record: dict[str, Any]) -> bytes:
        key_id = record["KeyId"]
        material = self._materials.get(key_id)
        if material is None:
            material = self.master.unwrap(key_id, base64.b64decode(record["Material"]))
            self._materials[key_id] = material
        return material

    @staticmethod
    def _usable(record: dict[str, Any]) -> None:
        state = record["KeyState"]
        if state == "Disabled":
            raise AwsError("DisabledException", f"{record['Arn']} is disabled.", 400)
        if state != "Enabled":
            raise AwsError("KMSInvalidStateException", f"{record['Arn']} is pending deletion.", 400)

    # -- keys ---------------------------------------------------------------------

    async def create_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = self._new_key(ctx, params)
        await self._save(ctx, record)
        return {"KeyMetadata": self._metadata(record)}

    async def describe_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"KeyMetadata": self._metadata(await self._resolve(ctx, params["KeyId"]))}

    async def list_keys(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = await self.app.store.read(lambda txn: txn.scan(KEYS, prefix=pack(ctx.region)))
        keys = [{"KeyId": r["KeyId"], "KeyArn": r["Arn"]} for r in (orjson.loads(v) for _, v in rows)]
        page = _page(keys, params, 1000)
        return {"Keys": page.pop("items"), **page}

    async def _set_state(self, ctx: RequestContext, key_ref: str, **changes: Any) -> dict[str, Any]:
        record = await self._resolve(ctx, key_ref)
        if record["KeyManager"] == "AWS":
            raise AwsError("AccessDeniedException", f"{record['Arn']} is an AWS managed key", 400)
        record.update(changes)
        await self._save(ctx, record)
        return record

    async def enable_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._resolve(ctx, params["KeyId"])
        if record["KeyState"] == "PendingDeletion":
            self._usable(record)
        await self._set_state(ctx, params["KeyId"], KeyState="Enabled", Enabled=True)
        return {}

    async def disable_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._resolve(ctx, params["KeyId"])
        if record["KeyState"] == "PendingDeletion":
            self._usable(record)
        await self._set_state(ctx, params["KeyId"], KeyState="Disabled", Enabled=False)
        return {}

    async def schedule_key_deletion(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        days = int(params.get("PendingWindowInDays") or 30)
        if not 7 <= days <= 30:
            raise AwsError("ValidationException", "PendingWindowInDays must be between 7 and 30", 400)
        when = _now() + days * 86400
        record = await self._set_state(ctx, params["KeyId"], KeyState="PendingDeletion", Enabled=False, DeletionDate=when)
        return {"KeyId": record["Arn"], "DeletionDate": when, "KeyState": "PendingDeletion", "PendingWindowInDays": days}

    async def cancel_key_deletion(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._resolve(ctx, params["KeyId"])
        if record["KeyState"] != "PendingDeletion":
            raise AwsError("KMSInvalidStateException", f"{record['Arn']} is not pending deletion.", 400)
        record.pop("DeletionDate", None)
        record = await self._set_state(ctx, params["KeyId"], KeyState="Disabled", Enabled=False)
        return {"KeyId": record["Arn"]}

    async def update_key_description(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._set_state(ctx, params["KeyId"], Description=params["Description"])
        return {}

    # -- aliases --------------------------------------------------------------------

    async def create_alias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name: str = params["AliasName"]
        if not name.startswith("alias/") or name.startswith("alias/aws/"):
            raise AwsError("ValidationException" if not name.startswith("alias/") else "NotAuthorizedException",
                           f"Alias must start with the prefix \"alias/\" and must not begin with \"alias/aws/\": {name}", 400)  # fmt: skip
        record = await self._resolve(ctx, params["TargetKeyId"])
        now = _now()
        alias = {"AliasName": name, "AliasArn": ctx.arn("kms", name), "TargetKeyId": record["KeyId"],
                 "CreationDate": now, "LastUpdatedDate": now}  # fmt: skip

        def create(txn: Txn) -> bool:
            return txn.insert(ALIASES, pack(ctx.region, name), orjson.dumps(alias))

        if not await self.app.store.write(create):
            raise AwsError("AlreadyExistsException", f"An alias with the name {ctx.arn('kms', name)} already exists", 400)
        return {}

    async def update_alias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name: str = params["AliasName"]
        record = await self._resolve(ctx, params["TargetKeyId"])

        def update(txn: Txn) -> bool:
            raw = txn.get(ALIASES, pack(ctx.region, name))
            if raw is None:
                return False
            alias = orjson.loads(raw)
            alias.update(TargetKeyId=record["KeyId"], LastUpdatedDate=_now())
            txn.put(ALIASES, pack(ctx.region, name), orjson.dumps(alias))
            return True

        if not await self.app.store.write(update):
            raise AwsError("NotFoundException", f"Alias {ctx.arn('kms', name)} is not found.", 400)
        return {}

    async def delete_alias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name: str = params["AliasName"]
        if not await self.app.store.write(lambda txn: txn.delete(ALIASES, pack(ctx.region, name))):
            raise AwsError("NotFoundException", f"Alias {ctx.arn('kms', name)} is not found.", 400)
        return {}

    async def list_aliases(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = await self.app.store.read(lambda txn: txn.scan(ALIASES, prefix=pack(ctx.region)))
        aliases = [orjson.loads(v) for _, v in rows]
        if params.get("KeyId"):
            target = (await self._resolve(ctx, params["KeyId"]))["KeyId"]
            aliases = [a for a in aliases if a["TargetKeyId"] == target]
        page = _page(aliases, params)
        return {"Aliases": page.pop("items"), **page}

    # -- cryptography ---------------------------------------------------------------

    async def encrypt(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._resolve(ctx, params["KeyId"])
        self._usable(record)
        blob = crypto.encrypt(record["KeyId"], self._material(record), params["Plaintext"], params.get("EncryptionContext"))
        return {"CiphertextBlob": blob, "KeyId": record["Arn"], "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}

    async def decrypt(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "CiphertextBlob")
        blob: bytes = params["CiphertextBlob"]
        key_id = crypto.blob_key_id(blob)
        if key_id is None:
            raise AwsError("InvalidCiphertextException", "", 400)
        record = await self._resolve(ctx, key_id)
        if params.get("KeyId"):
            wanted = await self._resolve(ctx, params["KeyId"])
            if wanted["KeyId"] != record["KeyId"]:
                raise AwsError("IncorrectKeyException", "The key ID in the request does not identify a CMK that can perform this operation.", 400)
        self._usable(record)
        plaintext = crypto.decrypt(self._material(record), blob, params.get("EncryptionContext"))
        if plaintext is None:
            raise AwsError("InvalidCiphertextException", "", 400)
        return {"Plaintext": plaintext, "KeyId": record["Arn"], "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}

    async def re_encrypt(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        require(params, "CiphertextBlob")
        plain = await self.decrypt(ctx, {"CiphertextBlob": params["CiphertextBlob"],
                                         "EncryptionContext": params.get("SourceEncryptionContext")})  # fmt: skip
        out = await self.encrypt(ctx, {"KeyId": params["DestinationKeyId"], "Plaintext": plain["Plaintext"],
                                       "EncryptionContext": params.get("DestinationEncryptionContext")})  # fmt: skip
        return {"CiphertextBlob": out["CiphertextBlob"], "SourceKeyId": plain["KeyId"], "KeyId": out["KeyId"],
                "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT", "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT"}  # fmt: skip

    @staticmethod
    def _data_key_size(params: dict[str, Any]) -> int:
        if params.get("NumberOfBytes") and params.get("KeySpec"):
            raise AwsError("ValidationException", "Please specify either number of bytes or key spec.", 400)
        if params.get("NumberOfBytes"):
            return int(params["NumberOfBytes"])
        spec = params.get("KeySpec")
        if spec == "AES_256":
            return 32
        if spec == "AES_128":
            return 16
        raise AwsError("ValidationException", "Please specify either number of bytes or key spec.", 400)

    async def generate_data_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        plaintext = secrets.token_bytes(self._data_key_size(params))
        out = await self.encrypt(ctx, {"KeyId": params["KeyId"], "Plaintext": plaintext,
                                       "EncryptionContext": params.get("EncryptionContext")})  # fmt: skip
        return {"CiphertextBlob": out["CiphertextBlob"], "Plaintext": plaintext, "KeyId": out["KeyId"]}

    async def generate_data_key_without_plaintext(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        out = await self.generate_data_key(ctx, params)
        return {"CiphertextBlob": out["CiphertextBlob"], "KeyId": out["KeyId"]}

    async def generate_random(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        count = int(params.get("NumberOfBytes") or 32)
        return {"Plaintext": secrets.token_bytes(count)}

    # -- tags -------------------------------------------------------------------------

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._resolve(ctx, params["KeyId"])
        tags = {t["TagKey"]: t["TagValue"] for t in record.get("Tags", [])}
        tags.update({t["TagKey"]: t["TagValue"] for t in params["Tags"]})
        record["Tags"] = [{"TagKey": k, "TagValue": v} for k, v in tags.items()]
        await self._save(ctx, record)
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._resolve(ctx, params["KeyId"])
        drop = set(params["TagKeys"])
        record["Tags"] = [t for t in record.get("Tags", []) if t["TagKey"] not in drop]
        await self._save(ctx, record)
        return {}

    async def list_resource_tags(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._resolve(ctx, params["KeyId"])
        page = _page(list(record.get("Tags", [])), params, 50)
        return {"Tags": page.pop("items"), **page}
