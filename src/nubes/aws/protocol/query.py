"""The ``query`` protocol: form-encoded requests, XML responses (STS, SNS, IAM, ...)."""

from __future__ import annotations

from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from nubes.aws.errors import AwsError
from nubes.aws.protocol.values import Problems, check_required, scalar_from_text
from nubes.aws.protocol.xmlcodec import write_members

Tree = dict[str, Any]


def build_tree(params: dict[str, str]) -> Tree:
    """``{"Tags.member.1.Key": "a"}`` → ``{"Tags": {"member": {"1": {"Key": "a"}}}}``."""
    root: Tree = {}
    for key, value in params.items():
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None or child == "" else {"": child}
                node[part] = child
            node = child
        last = parts[-1]
        if isinstance(node.get(last), dict):
            node[last][""] = value
        else:
            node[last] = value
    return root


def _indexed(node: Any) -> list[Any]:
    if not isinstance(node, dict):
        return []
    items = [(int(k), v) for k, v in node.items() if k.isdigit()]
    return [v for _, v in sorted(items)]


def read_value(shape: Shape, node: Any, path: str, problems: Problems) -> Any:
    """Convert a tree node to a provider value of ``shape``."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(node, dict):
            return {}
        out: dict[str, Any] = {}
        for key, member in shape.members.items():
            name = member.serialization.get("name", key)
            if member.type_name == "list" and member.serialization.get("flattened"):
                assert isinstance(member, ListShape)
                name = member.member.serialization.get("name", name)
            if name not in node:
                continue
            mpath = f"{path}.{key[:1].lower()}{key[1:]}" if path else key[:1].lower() + key[1:]
            out[key] = read_value(member, node[name], mpath, problems)
        check_required(shape, out, path, problems)
        return out
    if kind == "list":
        assert isinstance(shape, ListShape)
        if node == "" or node is None:
            return []
        if not shape.serialization.get("flattened"):
            node = node.get(shape.member.serialization.get("name", "member"), {}) if isinstance(node, dict) else {}
        return [read_value(shape.member, item, f"{path}.{i + 1}.member", problems)
                for i, item in enumerate(_indexed(node))]  # fmt: skip
    if kind == "map":
        assert isinstance(shape, MapShape)
        if not isinstance(node, dict):
            return {}
        entries = _indexed(node if shape.serialization.get("flattened") else node.get("entry", {}))
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        result: dict[str, Any] = {}
        for entry in entries:
            if isinstance(entry, dict) and key_name in entry:
                result[str(entry[key_name])] = read_value(shape.value, entry.get(value_name), path, problems)
        return result
    if isinstance(node, dict):
        node = node.get("", "")
    return scalar_from_text(shape, str(node), path, problems, "iso8601")


def parse_query_request(op: OperationModel, params: dict[str, str]) -> dict[str, Any]:
    """Form parameters (without Action/Version) → input dict, validated."""
    shape = op.input_shape
    if shape is None:
        return {}
    problems = Problems()
    result = read_value(shape, build_tree(params), "", problems)
    problems.raise_if_any()
    return result if isinstance(result, dict) else {}


def xml_namespace(op: OperationModel) -> str:
    meta = op.metadata
    ns = meta.get("xmlNamespace")
    if ns:
        return str(ns)
    return f"https://{meta.get('endpointPrefix')}.amazonaws.com/doc/{meta.get('apiVersion')}/"


def serialize_query_response(op: OperationModel, result: dict[str, Any], request_id: str) -> bytes:
    """The ``<OpResponse><OpResult>…</OpResult><ResponseMetadata>`` document."""
    name = op.name
    out = [f'<{name}Response xmlns="{xml_namespace(op)}">']
    shape = op.output_shape
    if isinstance(shape, StructureShape):
        wrapper = shape.serialization.get("resultWrapper") or f"{name}Result"
        out.append(f"<{wrapper}>")
        write_members(out, shape, result)
        out.append(f"</{wrapper}>")
    out.append(f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>")
    out.append(f"</{name}Response>")
    return "".join(out).encode()


def serialize_query_error(error: AwsError, request_id: str, namespace: str) -> bytes:
    """AWS's ``<ErrorResponse>`` document."""
    from xml.sax.saxutils import escape

    kind = "Sender" if error.sender_fault else "Receiver"
    extra = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in error.fields.items())
    return (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>{extra}"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
