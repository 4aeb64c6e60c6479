"""pytest plugin (entry point ``pytest11``): a real nubes server for your tests.

::

    def test_upload(nubes):
        s3 = nubes.client("s3")
        s3.create_bucket(Bucket="photos")

``nubes`` is one server for the whole test session (fast); ``nubes_env`` also sets
``AWS_ENDPOINT_URL`` and test credentials in the environment for code under test.
A test that needs a server of its own uses ``NubesServer`` directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nubes.testing.server import NubesServer


@pytest.fixture(scope="session")
def nubes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NubesServer]:
    """A running nubes server shared by the test session."""
    server = NubesServer(tmp_path_factory.mktemp("nubes"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def nubes_env(nubes: NubesServer, monkeypatch: pytest.MonkeyPatch) -> NubesServer:
    """The session server, with ``AWS_ENDPOINT_URL`` and credentials in the environment."""
    for key, value in nubes.env_vars().items():
        monkeypatch.setenv(key, value)
    return nubes
