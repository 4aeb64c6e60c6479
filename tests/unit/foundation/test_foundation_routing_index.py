"""The routing catalog is built from each model's metadata alone, agrees with the
full models, and loads a service's model only when a request first needs it."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap

import pytest
from botocore.loaders import Loader

from nubes.aws.errors import AwsError
from nubes.aws.facts import (
    LOADER,
    _metadata_in_head,
    _read_metadata,
    facts_from_metadata,
    model_data,
    service_facts,
)
from nubes.aws.protocol.types import WireRequest
from nubes.aws.spec import (
    build_catalog,
    client_protocol,
    service_index,
    service_model,
    signing_name,
)
from nubes.gateway.routing import resolve
from nubes.services.registry import discover

#: served models plus others whose metadata differs in kind (ec2 protocol,
#: several protocols, signing name unlike the endpoint prefix, JSON 1.0)
_MODELS = sorted({*discover(), "ec2", "cloudwatch", "timestream-query", "pipes", "rds-data", "sagemaker-runtime"})


@pytest.mark.parametrize("name", _MODELS)
def test_facts_from_the_file_head_equal_the_full_model(name: str) -> None:
    facts = service_facts(name)
    full = Loader().load_service_model(name, "service-2")
    assert facts == facts_from_metadata(name, full["metadata"])
    model = service_model(name)
    assert facts.protocol == client_protocol(model)
    assert facts.signing_name == signing_name(model)
    assert facts.target_prefix == model.metadata.get("targetPrefix")


def test_client_protocol_follows_botocore_priority_not_list_order() -> None:
    facts = facts_from_metadata("x", {"protocol": "query", "protocols": ["smithy-rpc-v2-cbor", "json", "query"]})
    assert facts.protocol == "json"
    assert facts.protocols == ("smithy-rpc-v2-cbor", "json", "query")
    assert facts.speaks_query and not facts.rest


def test_signing_name_falls_back_to_endpoint_prefix_then_name() -> None:
    assert facts_from_metadata("a", {"protocol": "json", "endpointPrefix": "ep"}).signing_name == "ep"
    assert facts_from_metadata("a", {"protocol": "json"}).signing_name == "a"
    assert facts_from_metadata("a", {"protocol": "json", "endpointPrefix": "ep", "signingName": "sn"}).signing_name == "sn"


class _Trickle(io.BytesIO):
    """A file that hands out a few bytes per read (chunk boundaries everywhere)."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(7)


def _doc(meta: dict[str, object], before: str = "") -> bytes:
    return ("{" + before + '"version":"2.0","metadata":' + json.dumps(meta, ensure_ascii=False)
            + ',"operations":{"A":{}},"shapes":{}}').encode()  # fmt: skip


def test_metadata_read_across_chunk_boundaries_and_multibyte_characters() -> None:
    meta = {"protocol": "json", "serviceFullName": "Ünïcödé — service " * 40, "targetPrefix": "X_1"}
    assert _metadata_in_head(_Trickle(_doc(meta))) == meta


def test_metadata_key_inside_a_string_is_not_taken_for_the_object() -> None:
    meta = {"protocol": "query"}
    doc = _doc(meta, before='"documentation":"see \\"metadata\\" below",')
    assert _metadata_in_head(io.BytesIO(doc)) == meta


def test_file_without_metadata_near_its_start_gives_none() -> None:
    assert _metadata_in_head(io.BytesIO(b'{"version":"2.0","operations":{}}')) is None
    assert _metadata_in_head(io.BytesIO(b"")) is None


def _run(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_building_the_catalog_loads_no_model_and_routing_loads_only_the_one_picked() -> None:
    # a fresh interpreter: this process's model caches are shared with other tests
    result = _run(
        """
        import json
        from nubes.aws import spec
        from nubes.aws.protocol.types import WireRequest
        from nubes.gateway.routing import resolve
        loaded = spec.service_model.cache_info
        catalog = spec.build_catalog(["ssm", "sts", "s3", "kms", "apigateway", "apigatewayv2"])
        after_build = loaded().currsize
        target = WireRequest("POST", "/", {}, {"x-amz-target": "AmazonSSM.GetParameter"}, b"{}")
        route = resolve(catalog, target, "ssm", None)
        after_target = loaded().currsize
        resolve(catalog, WireRequest("GET", "/restapis", {}, {}, b""), "apigateway", None)
        print(json.dumps({"after_build": after_build, "op": route.operation.name,
                          "after_target": after_target, "after_rest": loaded().currsize}))
        """
    )
    assert result["after_build"] == 0
    assert result["op"] == "GetParameter"
    assert result["after_target"] == 1
    # the two models signed as "apigateway" (v1 and v2) are loaded, sts/s3/kms are not
    assert result["after_rest"] == 3


def test_unsigned_action_routes_to_the_query_service_that_has_it() -> None:
    catalog = build_catalog(discover())
    form = {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": "r"}
    route = resolve(catalog, WireRequest("POST", "/", {}, {}, b""), None, form)
    assert (route.index.name, route.operation.name, route.protocol) == ("sts", "AssumeRoleWithWebIdentity", "query")
    assert route.form == {"RoleArn": "r"}


def test_unsigned_unknown_action_is_invalid_action() -> None:
    catalog = build_catalog(discover())
    with pytest.raises(AwsError) as err:
        resolve(catalog, WireRequest("POST", "/", {}, {}, b""), None, {"Action": "NoSuchThing"})
    assert (err.value.code, err.value.status) == ("InvalidAction", 400)


def test_signed_action_for_a_json_service_that_is_query_compatible() -> None:
    catalog = build_catalog(discover())
    route = resolve(catalog, WireRequest("POST", "/", {}, {}, b""), "sqs", {"Action": "ListQueues"})
    assert (route.index.name, route.operation.name, route.protocol) == ("sqs", "ListQueues", "query")


def test_unknown_signing_service_and_unknown_target() -> None:
    catalog = build_catalog(discover())
    with pytest.raises(AwsError) as err:
        resolve(catalog, WireRequest("GET", "/x", {}, {}, b""), "ec2", None)
    assert err.value.code == "UnknownService"
    with pytest.raises(AwsError) as err:
        resolve(catalog, WireRequest("POST", "/", {}, {"x-amz-target": "Nope_2020.Do"}, b"{}"), "x", None)
    assert err.value.code == "UnknownOperationException"
    with pytest.raises(AwsError) as err:
        resolve(catalog, WireRequest("POST", "/", {}, {"x-amz-target": "AmazonSSM.NoSuchOp"}, b"{}"), "ssm", None)
    assert err.value.code == "UnknownOperationException"


def test_unsigned_rest_request_is_s3() -> None:
    catalog = build_catalog(discover())
    route = resolve(catalog, WireRequest("GET", "/bucket", {"list-type": ["2"]}, {}, b""), None, None)
    assert (route.index.name, route.operation.name) == ("s3", "ListObjectsV2")


@pytest.mark.parametrize("name", ["secretsmanager", "s3", "ssm"])
def test_metadata_read_from_the_head_includes_what_sdk_extras_merge(name: str) -> None:
    # secretsmanager's sdk-extras changes serviceId; s3's adds a shape (not metadata)
    assert _read_metadata(LOADER, name) == dict(Loader().load_service_model(name, "service-2")["metadata"])


def test_model_patches_run_when_the_model_loads_or_at_once_if_it_is_loaded() -> None:
    result = _run(
        """
        import json
        from nubes.aws import spec
        seen = []
        spec.on_model_load("sts", lambda m: seen.append(("sts", m.service_name)))
        before = list(seen)
        spec.service_model("sts")
        spec.service_model("sts")  # cached: patched once
        spec.service_model("kms")
        spec.on_model_load("kms", lambda m: seen.append(("kms", m.service_name)))
        print(json.dumps({"before": before, "seen": seen}))
        """
    )
    assert result == {"before": [], "seen": [["sts", "sts"], ["kms", "kms"]]}


@pytest.mark.parametrize("name", sorted(n for n in discover() if service_facts(n).rest))
def test_a_rest_route_matches_only_paths_starting_with_its_literal_prefix(name: str) -> None:
    index = service_index(name)
    for routes in index.rest_routes.values():
        for route in routes:
            uri = index.model.operation_model(route.operation).http["requestUri"].partition("?")[0]
            sample = re.sub(r"\{[^}]+\+\}", "a/b", re.sub(r"\{[^}+]+\}", "a-b", uri))
            assert sample.startswith(route.prefix), (route.operation, route.prefix)
            assert route.path_regex.match(sample), (route.operation, route.pattern, sample)
            found = index.match_rest(route.method, "/zz-not-a-prefix" + sample, {})
            assert found is None or found[0].prefix in ("", "/"), route.operation


@pytest.mark.parametrize("name", sorted(discover()))
def test_error_statuses_from_raw_shapes_equal_botocores_shapes(name: str) -> None:
    model = service_model(name)
    expected: dict[str, int] = {}
    for shape in model.error_shapes:
        err = shape.metadata.get("error", {})
        expected[shape.name] = int(err.get("httpStatusCode", 400))
        if err.get("code"):
            expected[str(err["code"])] = expected[shape.name]
    assert service_index(name).error_status == expected
    assert expected  # every served model has errors


@pytest.mark.parametrize("name", sorted(n for n in discover() if service_facts(n).rest))
def test_rest_routes_from_raw_definitions_agree_with_botocores_shapes(name: str) -> None:
    index = service_index(name)
    routes = {r.operation: r for rs in index.rest_routes.values() for r in rs}
    assert set(routes) == set(index.model.operation_names)
    for op_name, route in routes.items():
        op = index.model.operation_model(op_name)
        shape = op.input_shape
        required = shape.required_members if shape is not None else []
        located = {n: shape.members[n].serialization for n in required} if shape is not None else {}
        query = {str(s.get("name", n)) for n, s in located.items() if s.get("location") == "querystring"}
        headers = {str(s.get("name", n)).lower() for n, s in located.items() if s.get("location") == "header"}
        assert (route.member_query, route.required_headers) == (query, headers), op_name
        assert route.method == op.http["method"]
        assert route.score[3] == (0 if op.deprecated else 1)


@pytest.mark.parametrize("name", [*sorted(discover()), "ec2"])
def test_model_data_equals_what_botocores_loader_returns(name: str) -> None:
    # s3 and secretsmanager have sdk-extras merged in; plain dicts compare equal to
    # botocore's OrderedDicts by content. A fresh read: services may patch the cached
    # copy (SQS relaxes an enum)
    assert model_data.__wrapped__(name) == Loader().load_service_model(name, "service-2")
