"""The provider's static operation table matches the control-plane classes, and
importing the provider leaves the heavy parts unimported."""

from __future__ import annotations

import inspect
import subprocess
import sys

from nubes.services.apigateway.export import Exports
from nubes.services.apigateway.openapi_http import HttpApiImports
from nubes.services.apigateway.operations import OPERATIONS
from nubes.services.apigateway.provider import ApiGatewayProvider
from nubes.services.apigateway.tags import TagsV1, TagsV2
from nubes.services.apigateway.usage import UsagePlans
from nubes.services.apigateway.v1 import RestApis
from nubes.services.apigateway.v1_more import RestApiExtras
from nubes.services.apigateway.v2 import HttpApis

#: (generation, provider attribute, class) of every control plane
PLANES = (("v1", "v1", RestApis), ("v1", "usage", UsagePlans), ("v1", "v1x", RestApiExtras), ("v1", "tags1", TagsV1),
          ("v1", "exports", Exports), ("v2", "v2", HttpApis), ("v2", "tags2", TagsV2), ("v2", "v2x", HttpApiImports),
          ("v2", "exports", Exports))  # fmt: skip


def _from_classes() -> dict[str, tuple[tuple[str, str, str], ...]]:
    """Operation method -> implementations, read off the classes; v2 methods named
    ``*_v2`` implement the operation of the same name without it."""
    table: dict[str, list[tuple[str, str, str]]] = {}
    for generation, plane, cls in PLANES:
        for name, member in vars(cls).items():
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                table.setdefault(name.removesuffix("_v2"), []).append((generation, plane, name))
    return {name: tuple(sorted(impls)) for name, impls in sorted(table.items())}


def test_operation_table_matches_the_plane_classes() -> None:
    expected = _from_classes()
    pasteable = "\n".join(f"    {name!r}: {impls!r},".replace("'", '"') for name, impls in expected.items())
    assert {k: tuple(sorted(v)) for k, v in OPERATIONS.items()} == expected, "operations.OPERATIONS is stale; paste:\n" + pasteable


def test_every_operation_is_a_provider_method_dispatching_to_its_plane() -> None:
    for name, implementations in OPERATIONS.items():
        method = getattr(ApiGatewayProvider, name)
        assert inspect.iscoroutinefunction(method), name
        for _, plane, attribute in implementations:
            cls = next(c for _, p, c in PLANES if p == plane)
            assert inspect.iscoroutinefunction(getattr(cls, attribute)), (name, plane, attribute)


def test_importing_the_provider_imports_no_plane_openapi_yaml_jwt_or_velocity() -> None:
    # what the provider itself pulls in, beyond what nubes.app and the gateway already import
    code = ("import sys, nubes.app, nubes.aws.protocol, nubes.services.base, nubes.gateway.websocket\n"
            "before = set(sys.modules)\n"
            "import nubes.services.apigateway.provider\n"
            "heavy = ['jwt', 'yaml', 'airspeed'] + ['nubes.services.apigateway.' + m for m in\n"
            "    ('v1', 'v2', 'v1_more', 'usage', 'openapi', 'openapi_http', 'export', 'authorizers', 'rest_api', 'http_api', 'vtl', 'websockets')]\n"
            "print(','.join(m for m in heavy if m in sys.modules and m not in before))\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
