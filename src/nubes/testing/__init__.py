"""Test helpers: run a real nubes server for a test session (see ``plugin``)."""

from nubes.testing.server import NubesServer, free_port

__all__ = ["NubesServer", "free_port"]
