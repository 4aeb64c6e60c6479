"""The app object: owns settings, store, event bus and the service providers.

There is no global mutable state outside it; tests build a fresh ``App`` each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from functools import cache
from typing import Any

from botocore import xform_name

from nubes import __version__
from nubes.aws.errors import AwsError, not_implemented
from nubes.aws.ids import new_request_id
from nubes.events.bus import EventBus
from nubes.services.base import Provider, RequestContext, ServiceSpec
from nubes.services.registry import discover, discover_hooks
from nubes.settings import Settings
from nubes.storage.base import Store

log = logging.getLogger(__name__)


@cache
def operation_method_name(operation: str) -> str:
    """``GetParameter`` → ``get_parameter`` (botocore's own naming, as boto3 shows it)."""
    name: str = xform_name(operation)
    return name


class App:
    """One nubes instance."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.version = __version__
        self._store = store
        self.bus = EventBus()
        self.specs: dict[str, ServiceSpec] = discover()
        #: model-less packages that only serve raw routes (the console), by package name
        self.hooks: dict[str, ServiceSpec] = discover_hooks()
        self._providers: dict[type[Provider], Provider] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: providers whose ``start()`` runs in the background (``start(background=True)``),
        #: until it has finished well; one that failed stays, with its exception
        self._starting: dict[type[Provider], asyncio.Task[None]] = {}
        #: (service, operation) → the provider's bound method, found once
        self._methods: dict[tuple[str, str], Any] = {}
        self.started = False
        self._relay: Any = None
        #: ``https://127.0.0.1:<port>`` when the TLS listener runs (set by the server)
        self.tls_endpoint: str | None = None
        #: the local CA's certificate, for function instances to trust
        self.ca_bundle: str | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the store is opened by App.start()")
        return self._store

    def provider(self, model: str) -> Provider:
        """The provider serving a botocore model name (built on first use)."""
        spec = self.specs.get(model) or self.hooks.get(model)
        if spec is None:
            raise KeyError(model)
        provider = self._providers.get(spec.provider)
        if provider is None:
            provider = spec.provider(self)
            self._providers[spec.provider] = provider
        return provider

    async def start(self, *, background: bool = False) -> None:
        """Open the store and start every provider.

        With ``background`` the providers' ``start()`` calls run as tasks (each first
        runs up to its first wait, in order) and this returns once the store is open,
        so the server answers at once; a request to a service, or an internal call,
        waits in :meth:`ready` for that provider's start to finish. The Lambda
        provider's start waits ~0.3 s for its zygote, the rest take milliseconds.
        """
        if self._store is None:
            from nubes.storage import open_store

            self._store = await open_store(self.settings)
        if self.settings.broker.startswith("nats://"):
            from nubes.events.broker import NatsRelay, cluster_subject

            self._relay = NatsRelay(self.settings.broker, self.bus, cluster_subject(self.settings.store))
            await self._relay.start()
        for model in [*sorted(self.specs), *sorted(self.hooks)]:
            self.provider(model)
        if background:
            for kind, provider in list(self._providers.items()):
                task = asyncio.create_task(provider.start(), name=f"start {kind.__name__}")
                self._starting[kind] = task
                task.add_done_callback(self._start_done)
            await asyncio.sleep(0)  # each start runs to its first wait, in order
        else:
            for provider in list(self._providers.values()):
                await provider.start()
        self.started = True

    def _start_done(self, task: asyncio.Task[None]) -> None:
        for kind, started in list(self._starting.items()):
            if started is not task or task.cancelled():
                continue
            if task.exception() is None:
                del self._starting[kind]
            else:
                log.error("starting %s failed", kind.__name__, exc_info=task.exception())

    async def ready(self, model: str) -> Provider:
        """The provider serving ``model`` once its start has finished (see :meth:`start`);
        ``ServiceUnavailableException`` when it failed to start."""
        provider = self.provider(model)
        task = self._starting.get(type(provider))
        if task is not None:
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # the caller was cancelled, not the start
                raise AwsError("ServiceUnavailableException", f"{model} is stopping", 503) from None
            except Exception as exc:
                raise AwsError(
                    "ServiceUnavailableException", f"{model} could not start: {type(exc).__name__}: {exc}", 503
                ) from None
        return provider

    async def stop(self) -> None:
        """Stop providers, cancel background tasks, close the store."""
        if self._starting:
            # a provider stops what its start began: let the starts finish first
            await asyncio.gather(*self._starting.values(), return_exceptions=True)
            self._starting.clear()
        for provider in reversed(list(self._providers.values())):
            try:
                await provider.stop()
            except Exception:
                log.exception("stopping %s failed", type(provider).__name__)
        if self._relay is not None:
            await self._relay.stop()
            self._relay = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._store is not None:
            await self._store.close()
        self.started = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run a background task owned by the app (cancelled on stop; errors logged)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def context(
        self,
        service: str,
        operation: str,
        *,
        region: str | None = None,
        request_id: str | None = None,
        access_key: str | None = None,
    ) -> RequestContext:
        """A request context for calls that do not come over HTTP."""
        return RequestContext(
            app=self,
            service=service,
            operation=operation,
            region=region or self.settings.default_region,
            account_id=self.settings.account_id,
            request_id=request_id or new_request_id(),
            # calls between services act as the platform: the first configured key
            access_key=access_key or next(iter(self.settings.credentials), None),
            endpoint=self.settings.endpoint,
        )

    async def dispatch(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Call the provider method for ``ctx.operation``."""
        key = (ctx.service, ctx.operation)
        method = self._methods.get(key)
        if method is None:
            try:
                provider = await self.ready(ctx.service)
            except KeyError:
                raise AwsError(
                    "UnknownService", f"nubes does not serve the service {ctx.service}", 400
                ) from None
            method = getattr(provider, operation_method_name(ctx.operation), None)
            if method is None:
                raise not_implemented(ctx.service, ctx.operation)
            self._methods[key] = method  # only methods that exist: bounded by the models
        result = await method(ctx, params)
        return result if result is not None else {}

    async def call(
        self,
        service: str,
        operation: str,
        params: dict[str, Any] | None = None,
        *,
        region: str | None = None,
    ) -> dict[str, Any]:
        """The internal client: call another service's operation in-process."""
        ctx = self.context(service, operation, region=region)
        return await self.dispatch(ctx, params or {})
