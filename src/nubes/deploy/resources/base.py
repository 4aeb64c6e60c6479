"""What a resource handler is: create/update/delete one CloudFormation resource
type through the internal client, and report its ``Ref`` and ``Fn::GetAtt`` values
exactly as CloudFormation documents them for that type.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from nubes.aws.errors import AwsError
from nubes.aws.spec import service_model

if TYPE_CHECKING:
    from nubes.app import App

_SUFFIX_ALPHABET = string.ascii_uppercase + string.digits


@dataclass
class Outcome:
    """What a create or update produced."""

    #: the physical id CloudFormation shows (PhysicalResourceId)
    physical_id: str
    #: ``Fn::GetAtt`` attribute values
    attributes: dict[str, Any] = field(default_factory=dict)
    #: the ``Ref`` value when it differs from the physical id
    ref: Any = None


@dataclass
class HandlerContext:
    """Where a handler runs: the app, the stack, the resource."""

    app: App
    region: str
    account_id: str
    stack_name: str
    stack_id: str
    logical_id: str
    #: the template's type (``Custom::Thing`` for custom resources)
    resource_type: str = ""
    #: access key of the caller who started the stack operation: resources are
    #: created with the caller's identity, as CloudFormation does without a RoleARN
    access_key: str | None = None

    async def call(self, service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Call another service in the stack's region, as the stack's caller."""
        return await call_as(self.app, self.access_key, service, operation, params, self.region)

    def arn(self, service: str, resource: str) -> str:
        """An ARN in the stack's region and account."""
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def physical_name(self, max_length: int = 255, *, separator: str = "-", suffix: str = "") -> str:
        """A generated name as CloudFormation makes them: ``{stack}-{logical}-{RANDOM}``,
        shortened to fit ``max_length``."""
        random = random_suffix(12)
        budget = max_length - len(random) - len(suffix) - 2 * len(separator)
        stack = self.stack_name[: max(budget // 2, 1)]
        logical = self.logical_id[: max(budget - len(stack), 1)]
        return f"{stack}{separator}{logical}{separator}{random}{suffix}"


async def call_as(app: App, access_key: str | None, service: str, operation: str,
                  params: dict[str, Any], region: str) -> dict[str, Any]:
    """The internal client with a caller identity (services such as S3 treat a call
    without one as anonymous)."""
    ctx = app.context(service, operation, region=region, access_key=access_key)
    return await app.dispatch(ctx, params)


def random_suffix(length: int) -> str:
    """The upper-case alphanumeric suffix CloudFormation appends to generated names."""
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


class ResourceHandler:
    """One resource type. Subclasses set ``type_name`` and implement the three verbs."""

    type_name: ClassVar[str] = ""
    #: attributes ``Fn::GetAtt`` accepts (None: any, decided by the handler)
    attributes: ClassVar[tuple[str, ...] | None] = ()
    #: properties whose change makes CloudFormation replace the resource
    replace_on: ClassVar[frozenset[str]] = frozenset()
    #: whether every property change is applied by replacement
    replace_always: ClassVar[bool] = False
    #: the property that names the resource (a custom name cannot be replaced in place)
    name_property: ClassVar[str | None] = None

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        """Create the resource; returns its physical id and attributes."""
        raise AwsError("NotImplemented", f"Resource type {self.type_name} cannot be created by nubes")

    async def update(
        self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]
    ) -> Outcome:
        """Apply a change that does not need replacement."""
        raise AwsError("NotImplemented", f"Resource type {self.type_name} cannot be updated in place by nubes")

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        """Delete the resource; a resource that is already gone is not an error."""

    def needs_replacement(self, props: dict[str, Any], old: dict[str, Any]) -> bool:
        """Whether changing ``old`` into ``props`` replaces the resource."""
        if self.replace_always:
            return True
        return any(props.get(name) != old.get(name) for name in self.replace_on)


def tags_list(value: Any) -> list[dict[str, str]]:
    """CloudFormation's ``Tags`` (a list of Key/Value, or a map) as a Key/Value list."""
    if isinstance(value, dict):
        return [{"Key": str(k), "Value": str(v)} for k, v in value.items()]
    if isinstance(value, list):
        return [{"Key": str(t["Key"]), "Value": str(t["Value"])} for t in value]
    return []


def tags_map(value: Any) -> dict[str, str]:
    """``Tags`` as a name → value map."""
    return {t["Key"]: t["Value"] for t in tags_list(value)}


def json_text(value: Any) -> str:
    """A property that may be given as an object or as a JSON string, as a string."""
    return value if isinstance(value, str) else json.dumps(value)


def as_int(value: Any) -> int:
    """Template numbers may arrive as strings (parameters)."""
    return int(value)


def as_bool(value: Any) -> bool:
    """Template booleans may arrive as strings."""
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def ignore_missing(exc: AwsError, *codes: str) -> None:
    """Re-raise ``exc`` unless it says the resource does not exist."""
    missing = codes or ("ResourceNotFoundException", "NotFoundException", "NoSuchEntity")
    if exc.code not in missing and "NotFound" not in exc.code:
        raise exc


@cache
def _input_members(service: str, operation: str) -> frozenset[str]:
    # the server's own copy of the model (a botocore session would load a second one)
    shape = service_model(service).operation_model(operation).input_shape
    return frozenset(shape.members) if shape is not None else frozenset()


def api_params(service: str, operation: str, props: dict[str, Any], *, camel: bool = False,
               rename: dict[str, str] | None = None) -> dict[str, Any]:
    """The properties that are members of ``operation``'s input (botocore model),
    renamed where CloudFormation spells them differently; with ``camel`` the first
    letter is lower-cased (API Gateway v1 uses camelCase members)."""
    members = _input_members(service, operation)
    out: dict[str, Any] = {}
    for key, value in props.items():
        name = (rename or {}).get(key) or (key[:1].lower() + key[1:] if camel else key)
        if name in members:
            out[name] = value
    return out
