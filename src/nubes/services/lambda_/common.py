"""What every part of the Lambda provider shares: lookups, code, the runtime, specs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nubes.aws.errors import AwsError
from nubes.services.base import Provider, RequestContext
from nubes.services.lambda_ import code as codes
from nubes.services.lambda_ import store as st
from nubes.services.lambda_.models import (
    LATEST,
    FunctionRef,
    function_arn,
    function_not_found,
    invalid,
    not_found,
    parse_function_name,
)
from nubes.services.lambda_.targets import CHANGED, Target, TargetCache
from nubes.storage.base import Txn

if TYPE_CHECKING:
    from nubes.runtime.spec import FunctionSpec

_MAX_LAYERS = 5
T = TypeVar("T")


#: the account of AWS's public Powertools for AWS Lambda layers
PUBLIC_LAYER_ACCOUNT = "017000801446"


class LambdaBase(Provider):
    """State and helpers the operation mixins build on."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.revisions = codes.RevisionCache()
        #: what Invoke resolved, until the next write (see targets.py)
        self.targets = TargetCache()
        self.runtime: Any = None  # nubes.runtime.manager.RuntimeManager, made in start()
        self._public_layers: Any = None  # nubes.runtime.layers.PublicLayers, made on first use

    @property
    def data_dir(self) -> Path:
        return Path(self.app.settings.data_dir)

    @property
    def account(self) -> str:
        return str(self.app.settings.account_id)

    def ref(self, ctx: RequestContext, params: dict[str, Any]) -> FunctionRef:
        """The function a request names (``FunctionName`` + ``Qualifier``)."""
        return parse_function_name(params["FunctionName"], ctx.region, params.get("Qualifier"))

    async def load(self, ref: FunctionRef) -> dict[str, Any]:
        """The function document, or ResourceNotFoundException."""
        key = st.function_key(ref.region, ref.name)
        doc = await self.app.store.read(lambda txn: st.get(txn, st.FUNCTIONS, key))
        if doc is None:
            raise function_not_found(ref.region, self.account, ref.name)
        return doc

    async def resolve(self, ref: FunctionRef, *, route: bool = False) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(function document, configuration of the version, version) for a qualifier.

        An alias resolves to its version; with ``route`` its RoutingConfig weights pick
        between the primary and the additional version (as Invoke does).
        """

        def read(txn: Txn) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
            doc = st.get(txn, st.FUNCTIONS, st.function_key(ref.region, ref.name))
            if doc is None:
                return None, None, ""
            qual = ref.qualifier or LATEST
            if qual == LATEST:
                return doc, doc["config"], LATEST
            if not qual.isdigit():
                alias = st.get(txn, st.ALIASES, st.alias_key(ref.region, ref.name, qual))
                if alias is None:
                    return doc, None, qual
                qual = pick_version(alias) if route else alias["FunctionVersion"]
                if qual == LATEST:
                    return doc, doc["config"], LATEST
            return doc, st.get(txn, st.VERSIONS, st.version_key(ref.region, ref.name, int(qual))), qual

        doc, config, version = await self.app.store.read(read)
        if doc is None:
            raise function_not_found(ref.region, self.account, ref.name)
        if config is None:
            raise function_not_found(ref.region, self.account, ref.name, ref.qualifier)
        return doc, config, version

    async def invocation(self, ref: FunctionRef) -> tuple[dict[str, Any], dict[str, Any], str, FunctionSpec]:
        """What Invoke runs for ``ref``: ``resolve(ref, route=True)`` and its spec, from
        :attr:`targets` while no write changed them. The documents are shared: read only."""
        target = await self._cached_target(ref)
        config, version = target.config, target.version
        if target.alias is not None:
            picked = pick_version(target.alias)
            if picked != version:  # an additional version of a weighted alias
                other = await self._version_target(ref, picked)
                config, version = other.config, other.version
        spec = target.specs.get(version)
        if spec is None:
            spec = self.function_spec(target.doc, config, version, ref.qualifier)
            if not config["_code"].get("hot"):  # a hot-reload directory's revision moves
                target.specs[version] = spec
        return target.doc, config, version, spec

    async def _version_target(self, ref: FunctionRef, version: str) -> Target:
        """A weighted alias's other version (not found: as ``resolve`` says it)."""
        try:
            return await self._cached_target(FunctionRef(ref.name, ref.region, version))
        except AwsError:
            raise function_not_found(ref.region, self.account, ref.name, ref.qualifier) from None

    async def _cached_target(self, ref: FunctionRef) -> Target:
        key = (ref.region, ref.name, ref.qualifier)
        target = self.targets.get(key)
        if target is None:
            generation = self.targets.generation
            target = await self._read_target(ref)
            self.targets.put(key, target, generation)
        return target

    async def _read_target(self, ref: FunctionRef) -> Target:
        """Read what ``ref`` names: an alias is kept whole, its weights are applied later."""

        def read(txn: Txn) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str, dict[str, Any] | None]:
            doc = st.get(txn, st.FUNCTIONS, st.function_key(ref.region, ref.name))
            if doc is None:
                return None, None, "", None
            qual = ref.qualifier or LATEST
            alias = None
            if qual != LATEST and not qual.isdigit():
                alias = st.get(txn, st.ALIASES, st.alias_key(ref.region, ref.name, qual))
                if alias is None:
                    return doc, None, qual, None
                qual = str(alias["FunctionVersion"])
            if qual == LATEST:
                return doc, doc["config"], LATEST, alias
            return doc, st.get(txn, st.VERSIONS, st.version_key(ref.region, ref.name, int(qual))), qual, alias

        doc, config, version, alias = await self.app.store.read(read)
        if doc is None:
            raise function_not_found(ref.region, self.account, ref.name)
        if config is None:
            raise function_not_found(ref.region, self.account, ref.name, ref.qualifier)
        return Target(doc, config, version, alias, self.targets.expiry())

    async def write(self, fn: Callable[[Txn], T]) -> T:
        """A write to Lambda's function, version, alias or URL tables: what Invoke
        cached is forgotten here and, through the broker, on other nodes."""
        try:
            return await self.app.store.write(fn)
        finally:
            self.targets.changed()
            self.app.bus.wake(CHANGED)

    async def forget_targets_on_change(self) -> None:
        """Forget cached targets whenever any node announces a Lambda write (until cancelled)."""
        while True:
            if await self.app.bus.wait(CHANGED, 3600.0):
                self.targets.changed()

    async def update_function(self, ref: FunctionRef, change: Any, *, revision_id: str | None = None) -> dict[str, Any]:
        """Apply ``change(doc)`` to a function document in one transaction."""

        def update(txn: Txn) -> dict[str, Any]:
            key = st.function_key(ref.region, ref.name)
            doc = st.get(txn, st.FUNCTIONS, key)
            if doc is None:
                raise function_not_found(ref.region, self.account, ref.name)
            if revision_id is not None and doc["config"]["RevisionId"] != revision_id:
                raise precondition_failed()
            change(doc)
            st.put(txn, st.FUNCTIONS, key, doc)
            return doc

        result: dict[str, Any] = await self.write(update)
        return result

    async def publish(self, region: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Publish $LATEST as a new version (implemented by ``VersionsMixin``)."""
        raise NotImplementedError

    async def invoke_function(self, region: str, name: str, qualifier: str | None, payload: bytes,
                              request_id: str) -> tuple[Any, str]:  # fmt: skip
        """Run a function synchronously from inside nubes (implemented by ``InvokeMixin``)."""
        raise NotImplementedError

    # -- code ---------------------------------------------------------------------------

    async def store_code(self, ctx: RequestContext, source: dict[str, Any], kind: str = "code") -> dict[str, Any]:
        """Turn ``Code``/``Content`` (ZipFile, S3Bucket+S3Key, hot-reload dir) into the
        ``_code`` record: ``{dir, hex, hot, sha, size}``."""
        if source.get("ImageUri"):
            raise invalid("nubes runs Zip functions only: ImageUri is not supported")
        if source.get("S3Bucket") == codes.HOT_RELOAD_BUCKET:
            directory = codes.local_dir(str(source.get("S3Key") or ""))
            return {"dir": str(directory), "hex": None, "hot": True,
                    "sha": codes.local_dir_sha(directory), "size": 0}  # fmt: skip
        data = source.get("ZipFile")
        if data is None and source.get("S3Bucket"):
            data = await self._s3_object(ctx, source)
        if not data:
            raise invalid("Please provide a source for function code.") if kind == "code" else invalid(
                "Please provide a source for layer content."
            )
        stored = await asyncio.to_thread(codes.store_zip, self.data_dir, bytes(data), kind)
        return {"dir": str(stored.directory), "hex": stored.hex, "hot": False,
                "sha": stored.sha256, "size": stored.size}  # fmt: skip

    async def _s3_object(self, ctx: RequestContext, source: dict[str, Any]) -> bytes:
        if "s3" not in self.app.specs:
            raise invalid("nubes has no S3 service in this build: upload the code as ZipFile instead")
        params = {"Bucket": source["S3Bucket"], "Key": source.get("S3Key") or ""}
        if source.get("S3ObjectVersion"):
            params["VersionId"] = source["S3ObjectVersion"]
        # as the caller (or the platform's key): S3 treats unsigned callers as anonymous
        access_key = ctx.access_key or next(iter(self.app.settings.credentials), None)
        s3_ctx = self.app.context("s3", "GetObject", region=ctx.region, access_key=access_key)
        try:
            result = await self.app.dispatch(s3_ctx, params)
        except AwsError as exc:
            raise invalid(
                f"Error occurred while GetObject. S3 Error Code: {exc.code}. S3 Error Message: {exc.message}"
            ) from None
        body = result.get("Body", b"")
        if isinstance(body, bytes | bytearray):
            return bytes(body)
        if hasattr(body, "read"):
            data = body.read()
            return bytes(await data) if asyncio.iscoroutine(data) else bytes(data)
        chunks = [bytes(c) async for c in body]
        return b"".join(chunks)

    async def resolve_layers(self, ctx: RequestContext, arns: list[str]) -> list[dict[str, Any]]:
        """Layer version ARNs → ``[{Arn, CodeSize, _dir}]`` (in order: later ones win)."""
        if len(arns) > _MAX_LAYERS:
            raise invalid("Cannot reference more than 5 layers.")
        out = []
        for arn in arns:
            parts = arn.split(":")
            if len(parts) != 8 or parts[5] != "layer" or not parts[7].isdigit():
                raise invalid(f"Layer version {arn} does not exist.")
            if parts[4] == PUBLIC_LAYER_ACCOUNT:
                out.append(await self._public_layer(arn))
                continue
            region, layer, version = parts[3], parts[6], int(parts[7])
            key = st.layer_key(region, layer, version)
            doc = await self.app.store.read(lambda txn, key=key: st.get(txn, st.LAYERS, key))  # type: ignore[misc]
            if doc is None or parts[4] != self.account:
                raise invalid(f"Layer version {arn} does not exist.")
            out.append({"Arn": arn, "CodeSize": doc["Content"]["CodeSize"], "_dir": doc["_dir"]})
        return out

    async def _public_layer(self, arn: str) -> dict[str, Any]:
        """AWS's public Powertools layers resolve to the matching release, installed once."""
        from nubes.runtime.layers import LayerInstallError, PublicLayers

        if self._public_layers is None:
            self._public_layers = PublicLayers(self.app.settings.data_dir / "layers" / "public")
        try:
            directory = await self._public_layers.resolve(arn)
        except LayerInstallError as exc:
            raise invalid(f"Layer version {arn} could not be installed: {exc}") from None
        if directory is None:
            raise invalid(f"Layer version {arn} does not exist.")
        return {"Arn": arn, "CodeSize": 0, "_dir": str(directory)}

    # -- the runtime ----------------------------------------------------------------------

    def function_spec(self, doc: dict[str, Any], config: dict[str, Any], version: str,
                      invoked_qualifier: str | None = None) -> FunctionSpec:  # fmt: skip
        """The runtime's view of one function version (``doc`` holds the concurrency).
        Its ``arn`` is the one the caller used (``context.invoked_function_arn``):
        unqualified, or with the alias or version it named."""
        from nubes.runtime.spec import FunctionSpec
        code = config["_code"]
        directory = Path(code["dir"])
        revision = config["RevisionId"]
        if code.get("hot"):
            revision += "/" + self.revisions.revision(directory)
        arn = config["FunctionArn"]
        region = arn.split(":")[3]
        env = (config.get("Environment") or {}).get("Variables") or {}
        logging_config = config.get("LoggingConfig") or {}
        return FunctionSpec(
            name=config["FunctionName"], version=version,
            arn=function_arn(region, self.account, config["FunctionName"], invoked_qualifier),
            runtime=config.get("Runtime") or "provided.al2023", handler=config.get("Handler") or "",
            code_dir=directory, revision=revision, log_group=logging_config.get("LogGroup", ""),
            region=region, account_id=self.account,
            layer_dirs=tuple(Path(layer["_dir"]) for layer in config.get("Layers") or ()),
            environment=dict(env), memory_mb=int(config.get("MemorySize") or 128),
            timeout_s=float(config.get("Timeout") or 3),
            ephemeral_mb=int((config.get("EphemeralStorage") or {}).get("Size", 512)),
            reserved_concurrency=doc.get("concurrency"),
            log_format=logging_config.get("LogFormat") or "Text",
            application_log_level=logging_config.get("ApplicationLogLevel"),
            system_log_level=logging_config.get("SystemLogLevel"),
        )  # fmt: skip

    def platform_env(self) -> dict[str, str]:
        """What every instance gets from the platform (the SDK finds nubes with it)."""
        settings = self.app.settings
        key, secret = next(iter(settings.credentials.items()), ("test", "test"))
        env = {"AWS_ENDPOINT_URL": settings.endpoint, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
        if self.app.ca_bundle:
            # HTTPS to *.amazonaws.com reaches nubes's TLS listener; trust its CA
            for name in ("AWS_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
                env[name] = self.app.ca_bundle
        return env

    def aws_hosts(self) -> dict[int, tuple[str, int]]:
        """Where ``*.amazonaws.com`` leads inside instances: 80 → HTTP, 443 → HTTPS."""
        from nubes.runtime.manager import default_aws_hosts

        hosts = default_aws_hosts(self.app.settings)
        if self.app.tls_endpoint:
            host, _, port = self.app.tls_endpoint.removeprefix("https://").rpartition(":")
            hosts[443] = (host, int(port))
        return hosts


def pick_version(alias: dict[str, Any]) -> str:
    """The version an invocation of an alias runs, by its routing weights."""
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    roll = random.random()
    for version, weight in weights.items():
        if roll < float(weight):
            return str(version)
        roll -= float(weight)
    return str(alias["FunctionVersion"])


def precondition_failed() -> AwsError:
    """A RevisionId that is not the current one."""
    return AwsError("PreconditionFailedException",
                    "The Revision Id provided does not match the latest Revision Id. "
                    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id", 412,
                    fields={"Type": "User"})  # fmt: skip


def qualified_arn(region: str, account: str, name: str, version: str) -> str:
    """The ARN Invoke reports and destinations carry (``...:$LATEST`` included)."""
    return function_arn(region, account, name, version)


def resource_not_found(message: str) -> AwsError:
    """Re-exported for mixins."""
    return not_found(message)
