"""Finds the service packages under ``nubes.services``.

Each package that defines ``SERVICE: ServiceSpec`` in its ``__init__`` is a
service; nothing central lists them, so a new service is one new package.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import nubes.services
from nubes.services.base import ServiceSpec


@cache
def discover() -> dict[str, ServiceSpec]:
    """Model name → spec, for every service package."""
    specs: dict[str, ServiceSpec] = {}
    for info in pkgutil.iter_modules(nubes.services.__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"nubes.services.{info.name}")
        spec = getattr(module, "SERVICE", None)
        if isinstance(spec, ServiceSpec):
            for model in spec.models:
                specs[model] = spec
    return specs


@cache
def discover_hooks() -> dict[str, ServiceSpec]:
    """Package name → spec, for packages that serve no AWS model, only raw routes
    (the console): they get a provider and their routes, but no catalog entry."""
    hooks: dict[str, ServiceSpec] = {}
    for info in pkgutil.iter_modules(nubes.services.__path__):
        if not info.ispkg:
            continue
        spec = getattr(importlib.import_module(f"nubes.services.{info.name}"), "SERVICE", None)
        if isinstance(spec, ServiceSpec) and not spec.models:
            hooks[info.name] = spec
    return hooks
