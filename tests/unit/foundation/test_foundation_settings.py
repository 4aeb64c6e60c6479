"""Settings: flags > NUBES_* env > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from nubes.app import operation_method_name
from nubes.settings import Settings


def test_defaults() -> None:
    s = Settings.load({}, env={})
    assert (s.host, s.port, s.store, s.data_dir) == ("127.0.0.1", 4566, "sqlite", Path(".nubes"))
    assert s.endpoint == "http://127.0.0.1:4566"
    assert dict(s.credentials) == {"test": "test"}


def test_env_then_flags() -> None:
    env = {"NUBES_PORT": "5000", "NUBES_DATA_DIR": "/tmp/x", "NUBES_NO_AUTH": "true", "NUBES_CREDENTIALS": "a:b,c:d"}
    s = Settings.load({}, env=env)
    assert (s.port, s.data_dir, s.no_auth) == (5000, Path("/tmp/x"), True)
    assert dict(s.credentials) == {"a": "b", "c": "d"}
    s = Settings.load({"port": 6000, "no_auth": None}, env=env)
    assert s.port == 6000 and s.no_auth is True


def test_store_backend() -> None:
    assert Settings.load({"store": "postgresql://localhost/test"}, env={}).store_backend == "postgresql"


def test_bad_credentials_value() -> None:
    with pytest.raises(ValueError):
        Settings.load({}, env={"NUBES_CREDENTIALS": "nosecret"})


@pytest.mark.parametrize(("op", "method"), [("GetParameter", "get_parameter"), ("ListObjectsV2", "list_objects_v2"), ("GetSAMLProvider", "get_saml_provider")])
def test_operation_method_names(op: str, method: str) -> None:
    assert operation_method_name(op) == method
