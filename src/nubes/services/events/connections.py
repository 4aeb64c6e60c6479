"""Connections (how to authorize: API key, basic, OAuth client credentials) and
API destinations (an HTTP endpoint invoked with a connection, rate limited)."""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

import orjson

from nubes.services.base import RequestContext
from nubes.services.events import store as st
from nubes.services.events.archives import ArchiveOperations
from nubes.services.events.common import (
    already_exists,
    not_found,
    now,
    paginate,
    timestamp,
    validation,
)
from nubes.services.events.targets import DeliveryError
from nubes.storage.base import Txn
from nubes.storage.keys import pack

HTTP_TIMEOUT = 5.0
DEFAULT_RATE = 300
#: longest a delivery waits for its destination's rate limit before being retried later
RATE_WAIT = 10.0
#: HTTP statuses EventBridge retries; other 4xx are permanent failures
_RETRIED_STATUSES = {401, 407, 409, 429}
_AUTH_TYPES = ("BASIC", "OAUTH_CLIENT_CREDENTIALS", "API_KEY")


def _public_auth(auth: dict[str, Any]) -> dict[str, Any]:
    """AuthParameters without secrets (what Describe shows)."""
    out: dict[str, Any] = {}
    if "BasicAuthParameters" in auth:
        out["BasicAuthParameters"] = {"Username": auth["BasicAuthParameters"].get("Username")}
    if "ApiKeyAuthParameters" in auth:
        out["ApiKeyAuthParameters"] = {"ApiKeyName": auth["ApiKeyAuthParameters"].get("ApiKeyName")}
    if "OAuthParameters" in auth:
        oauth = dict(auth["OAuthParameters"])
        client = oauth.get("ClientParameters") or {}
        oauth["ClientParameters"] = {"ClientID": client.get("ClientID")}
        out["OAuthParameters"] = oauth
    if "InvocationHttpParameters" in auth:
        out["InvocationHttpParameters"] = _hide_secret_values(auth["InvocationHttpParameters"])
    return out


def _hide_secret_values(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, items in params.items():
        out[kind] = [{**i, "Value": None} if i.get("IsValueSecret") else i for i in items or []]
        out[kind] = [{k: v for k, v in i.items() if v is not None} for i in out[kind]]
    return out


def _merge_auth(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_auth(merged[key], value)
        else:
            merged[key] = value
    return merged


class _Bucket:
    """Token bucket for one destination's InvocationRateLimitPerSecond."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    async def take(self, max_wait: float) -> bool:
        """Wait for a token; False if that would take longer than ``max_wait``
        seconds (so the delivery is retried later instead of outliving its lease)."""
        waited = 0.0
        while True:
            current = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (current - self.stamp) * self.rate)
            self.stamp = current
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            pause = (1 - self.tokens) / self.rate
            if waited + pause > max_wait:
                return False
            waited += pause
            await asyncio.sleep(pause)


class ConnectionOperations(ArchiveOperations):
    """Connections and API destinations, and invoking them."""

    _buckets: dict[str, _Bucket]
    _tokens: dict[str, tuple[str, float]]

    def _limits(self) -> tuple[dict[str, _Bucket], dict[str, tuple[str, float]]]:
        if not hasattr(self, "_buckets"):
            self._buckets, self._tokens = {}, {}
        return self._buckets, self._tokens

    # -- connections ------------------------------------------------------------------

    async def create_connection(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        name, kind = params["Name"], params["AuthorizationType"]
        auth = params.get("AuthParameters") or {}
        if kind not in _AUTH_TYPES:
            raise validation(f"Parameter AuthorizationType is not valid: {kind}")
        needed = {"BASIC": "BasicAuthParameters", "API_KEY": "ApiKeyAuthParameters",
                  "OAUTH_CLIENT_CREDENTIALS": "OAuthParameters"}[kind]  # fmt: skip
        if needed not in auth:
            raise validation(f"Parameter AuthParameters.{needed} must be specified for {kind}.")
        created = now()
        doc: dict[str, Any] = {
            "Name": name, "ConnectionArn": ctx.arn("events", f"connection/{name}/{uuid.uuid4()}"),
            "AuthorizationType": kind, "AuthParameters": auth, "ConnectionState": "AUTHORIZED",
            "CreationTime": created, "LastModifiedTime": created, "LastAuthorizedTime": created,
        }  # fmt: skip
        if params.get("Description"):
            doc["Description"] = params["Description"]
        if not await self.write(
            lambda txn: txn.insert(st.CONNECTIONS, pack(ctx.region, name), orjson.dumps(doc))
        ):
            raise already_exists(f"Connection {name} already exists.")
        return self._connection_state(doc)

    @staticmethod
    def _connection_state(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "ConnectionArn": doc["ConnectionArn"], "ConnectionState": doc["ConnectionState"],
            "CreationTime": timestamp(doc["CreationTime"]),
            "LastModifiedTime": timestamp(doc["LastModifiedTime"]),
        }  # fmt: skip

    async def _connection(self, region: str, name: str) -> dict[str, Any]:
        doc = await self.read(lambda txn: st.get_json(txn, st.CONNECTIONS, pack(region, name)))
        if doc is None:
            raise not_found(f"Connection '{name}' does not exist.")
        return doc

    async def describe_connection(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        doc = await self._connection(ctx.region, params["Name"])
        out = {k: doc[k] for k in ("ConnectionArn", "Name", "Description", "ConnectionState",
                                   "StateReason", "AuthorizationType") if doc.get(k)}  # fmt: skip
        out["AuthParameters"] = _public_auth(doc.get("AuthParameters") or {})
        for key in ("CreationTime", "LastModifiedTime", "LastAuthorizedTime"):
            out[key] = timestamp(doc.get(key))
        return out

    async def list_connections(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        prefix, state = params.get("NamePrefix") or "", params.get("ConnectionState")
        docs = await self.read(lambda txn: st.scan_json(txn, st.CONNECTIONS, ctx.region))
        docs = [
            d
            for d in docs
            if d["Name"].startswith(prefix) and (not state or d["ConnectionState"] == state)
        ]
        page, token = paginate(docs, params, lambda d: str(d["Name"]))
        views = [{"Name": d["Name"], "AuthorizationType": d["AuthorizationType"],
                  **self._connection_state(d)} for d in page]  # fmt: skip
        out: dict[str, Any] = {"Connections": views}
        if token:
            out["NextToken"] = token
        return out

    async def _change_connection(self, region: str, name: str, change: Any) -> dict[str, Any]:
        def update(txn: Txn) -> dict[str, Any] | None:
            doc = st.get_json(txn, st.CONNECTIONS, pack(region, name))
            if doc is None:
                return None
            change(doc)
            doc["LastModifiedTime"] = now()
            st.put_json(txn, st.CONNECTIONS, pack(region, name), doc)
            return doc

        doc = await self.write(update)
        if doc is None:
            raise not_found(f"Connection '{name}' does not exist.")
        self._limits()[1].pop(doc["ConnectionArn"], None)
        return doc

    async def update_connection(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        def change(doc: dict[str, Any]) -> None:
            for key in ("Description", "AuthorizationType"):
                if params.get(key):
                    doc[key] = params[key]
            if params.get("AuthParameters"):
                doc["AuthParameters"] = _merge_auth(
                    doc.get("AuthParameters") or {}, params["AuthParameters"]
                )
            doc["ConnectionState"] = "AUTHORIZED"

        doc = await self._change_connection(ctx.region, params["Name"], change)
        return {
            **self._connection_state(doc),
            "LastAuthorizedTime": timestamp(doc.get("LastAuthorizedTime")),
        }

    async def deauthorize_connection(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        def change(doc: dict[str, Any]) -> None:
            doc["ConnectionState"] = "DEAUTHORIZED"

        doc = await self._change_connection(ctx.region, params["Name"], change)
        return {
            **self._connection_state(doc),
            "LastAuthorizedTime": timestamp(doc.get("LastAuthorizedTime")),
        }

    async def delete_connection(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = params["Name"]
        doc = await self._connection(ctx.region, name)
        await self.write(lambda txn: txn.delete(st.CONNECTIONS, pack(ctx.region, name)))
        doc["ConnectionState"] = "DELETING"
        return {
            **self._connection_state(doc),
            "LastAuthorizedTime": timestamp(doc.get("LastAuthorizedTime")),
        }

    # -- API destinations -------------------------------------------------------------

    async def create_api_destination(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = params["Name"]
        connection_name = (
            params["ConnectionArn"].split(":")[-1].split("/")[1]
            if "/" in params["ConnectionArn"]
            else ""
        )
        connection = await self._connection(ctx.region, connection_name)
        if connection["ConnectionArn"] != params["ConnectionArn"]:
            raise not_found(f"Connection '{connection_name}' does not exist.")
        if not str(params["InvocationEndpoint"]).startswith(("https://", "http://")):
            raise validation("Parameter InvocationEndpoint is not valid.")
        created = now()
        doc: dict[str, Any] = {
            "Name": name,
            "ApiDestinationArn": ctx.arn("events", f"api-destination/{name}/{uuid.uuid4()}"),
            "ApiDestinationState": "ACTIVE", "ConnectionArn": params["ConnectionArn"],
            "InvocationEndpoint": params["InvocationEndpoint"], "HttpMethod": params["HttpMethod"],
            "InvocationRateLimitPerSecond": int(params.get("InvocationRateLimitPerSecond") or DEFAULT_RATE),
            "CreationTime": created, "LastModifiedTime": created,
        }  # fmt: skip
        if params.get("Description"):
            doc["Description"] = params["Description"]
        if not await self.write(
            lambda txn: txn.insert(st.DESTINATIONS, pack(ctx.region, name), orjson.dumps(doc))
        ):
            raise already_exists(f"An api-destination '{name}' already exists.")
        return self._destination_state(doc)

    @staticmethod
    def _destination_state(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "ApiDestinationArn": doc["ApiDestinationArn"],
            "ApiDestinationState": doc["ApiDestinationState"],
            "CreationTime": timestamp(doc["CreationTime"]),
            "LastModifiedTime": timestamp(doc["LastModifiedTime"]),
        }

    async def _destination(self, region: str, name: str) -> dict[str, Any]:
        doc = await self.read(lambda txn: st.get_json(txn, st.DESTINATIONS, pack(region, name)))
        if doc is None:
            raise not_found(f"An api-destination '{name}' does not exist.")
        return doc

    async def describe_api_destination(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        doc = await self._destination(ctx.region, params["Name"])
        out = {k: v for k, v in doc.items() if k not in ("CreationTime", "LastModifiedTime")}
        out["CreationTime"] = timestamp(doc["CreationTime"])
        out["LastModifiedTime"] = timestamp(doc["LastModifiedTime"])
        return out

    async def list_api_destinations(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        prefix, connection = params.get("NamePrefix") or "", params.get("ConnectionArn")
        docs = await self.read(lambda txn: st.scan_json(txn, st.DESTINATIONS, ctx.region))
        docs = [
            d
            for d in docs
            if d["Name"].startswith(prefix) and (not connection or d["ConnectionArn"] == connection)
        ]
        page, token = paginate(docs, params, lambda d: str(d["Name"]))
        views = []
        for doc in page:
            view = {
                k: v
                for k, v in doc.items()
                if k not in ("CreationTime", "LastModifiedTime", "Description")
            }
            views.append({**view, **self._destination_state(doc)})
        out: dict[str, Any] = {"ApiDestinations": views}
        if token:
            out["NextToken"] = token
        return out

    async def update_api_destination(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = params["Name"]

        def update(txn: Txn) -> dict[str, Any] | None:
            doc = st.get_json(txn, st.DESTINATIONS, pack(ctx.region, name))
            if doc is None:
                return None
            for key in ("Description", "ConnectionArn", "InvocationEndpoint", "HttpMethod",
                        "InvocationRateLimitPerSecond"):  # fmt: skip
                if params.get(key) is not None:
                    doc[key] = params[key]
            doc["LastModifiedTime"] = now()
            st.put_json(txn, st.DESTINATIONS, pack(ctx.region, name), doc)
            return doc

        doc = await self.write(update)
        if doc is None:
            raise not_found(f"An api-destination '{name}' does not exist.")
        self._limits()[0].pop(doc["ApiDestinationArn"], None)
        return self._destination_state(doc)

    async def delete_api_destination(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = params["Name"]
        if not await self.write(lambda txn: txn.delete(st.DESTINATIONS, pack(ctx.region, name))):
            raise not_found(f"An api-destination '{name}' does not exist.")
        return {}

    # -- invocation -------------------------------------------------------------------

    async def invoke_api_destination(
        self, region: str, target: dict[str, Any], payload: str, event: dict[str, Any]
    ) -> None:
        """Send the event to the destination's endpoint with its connection's auth."""
        arn = target["Arn"]
        name = arn.split(":api-destination/")[1].split("/")[0]
        try:
            destination = await self._destination(region, name)
            connection = await self._connection(region, destination["ConnectionArn"].split("/")[1])
        except Exception as exc:
            raise DeliveryError("ResourceNotFoundException", str(exc), retriable=False) from None
        if connection["ConnectionState"] != "AUTHORIZED":
            raise DeliveryError(
                "ConnectionNotAuthorized", "The connection is not authorized.", retriable=False
            )
        buckets, _ = self._limits()
        bucket = buckets.get(arn)
        if bucket is None:
            bucket = buckets[arn] = _Bucket(float(destination["InvocationRateLimitPerSecond"]))
        if not await bucket.take(RATE_WAIT):
            raise DeliveryError("ThrottlingException", "InvocationRateLimitPerSecond reached")
        method, url, headers, body = await self._http_request(
            destination, connection, target, payload
        )
        status, text = await asyncio.to_thread(_send, method, url, headers, body)
        if 200 <= status < 300:
            return
        retriable = status >= 500 or status in _RETRIED_STATUSES or status == 0
        raise DeliveryError(
            f"HTTP_{status}" if status else "HTTP_ERROR", text[:256], retriable=retriable
        )

    async def _http_request(
        self,
        destination: dict[str, Any],
        connection: dict[str, Any],
        target: dict[str, Any],
        payload: str,
    ) -> tuple[str, str, dict[str, str], bytes | None]:
        http = target.get("HttpParameters") or {}
        url = destination["InvocationEndpoint"]
        for value in http.get("PathParameterValues") or []:
            url = url.replace("*", urllib.parse.quote(str(value), safe=""), 1)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Amazon/EventBridge/ApiDestinations"}  # fmt: skip
        query = dict(http.get("QueryStringParameters") or {})
        auth = connection.get("AuthParameters") or {}
        for item in (auth.get("InvocationHttpParameters") or {}).get("HeaderParameters") or []:
            headers[item["Key"]] = item.get("Value", "")
        for item in (auth.get("InvocationHttpParameters") or {}).get("QueryStringParameters") or []:
            query[item["Key"]] = item.get("Value", "")
        headers.update({str(k): str(v) for k, v in (http.get("HeaderParameters") or {}).items()})
        kind = connection["AuthorizationType"]
        if kind == "API_KEY":
            key = auth["ApiKeyAuthParameters"]
            headers[key["ApiKeyName"]] = key.get("ApiKeyValue", "")
        elif kind == "BASIC":
            basic = auth["BasicAuthParameters"]
            pair = f"{basic.get('Username', '')}:{basic.get('Password', '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            headers["Authorization"] = "Bearer " + await self._oauth_token(connection)
        if query:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
        method = destination["HttpMethod"]
        body = None if method in ("GET", "HEAD") else payload.encode()
        return method, url, headers, body

    async def _oauth_token(self, connection: dict[str, Any]) -> str:
        _, tokens = self._limits()
        cached = tokens.get(connection["ConnectionArn"])
        if cached and cached[1] > time.time():
            return cached[0]
        oauth = connection["AuthParameters"]["OAuthParameters"]
        client = oauth.get("ClientParameters") or {}
        pair = f"{client.get('ClientID', '')}:{client.get('ClientSecret', '')}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(pair).decode(),
                   "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
        form = {"grant_type": "client_credentials"}
        extra = oauth.get("OAuthHttpParameters") or {}
        for item in extra.get("BodyParameters") or []:
            form[item["Key"]] = item.get("Value", "")
        for item in extra.get("HeaderParameters") or []:
            headers[item["Key"]] = item.get("Value", "")
        method = oauth.get("HttpMethod") or "POST"
        url = oauth["AuthorizationEndpoint"]
        body: bytes | None = urllib.parse.urlencode(form).encode()
        if method == "GET":
            url, body = url + ("&" if "?" in url else "?") + body.decode(), None  # type: ignore[union-attr]
        status, text = await asyncio.to_thread(_send, method, url, headers, body)
        if not 200 <= status < 300:
            raise DeliveryError(
                "OAuthAuthorizationFailed",
                f"token endpoint answered {status}",
                retriable=status >= 500,
            )
        try:
            answer = orjson.loads(text)
            token = str(answer["access_token"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise DeliveryError(
                "OAuthAuthorizationFailed", "no access_token in the token response", retriable=False
            ) from None
        tokens[connection["ConnectionArn"]] = (
            token,
            time.time() + float(answer.get("expires_in", 3600)) - 30,
        )
        return token


def _send(method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, str]:
    """One blocking HTTP request (run in a thread): (status, body text); status 0 if unreachable."""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return 0, str(exc)
