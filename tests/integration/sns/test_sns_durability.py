"""SNS fan-out is durable: a delivery pending when the server is killed arrives after restart."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from nubes.testing.server import NubesServer


class _Flaky(BaseHTTPRequestHandler):
    healthy = False
    notifications: list[dict[str, Any]] = []
    confirmations: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if doc["Type"] == "SubscriptionConfirmation":
            type(self).confirmations.append(doc)
            self.send_response(200)
        elif type(self).healthy:
            type(self).notifications.append(doc)
            self.send_response(200)
        else:
            self.send_response(503)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_pending_delivery_survives_kill_9(tmp_path: Path) -> None:
    http = HTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{http.server_address[1]}/"
    server = NubesServer(tmp_path / "data")
    server.start()
    try:
        sns = server.client("sns")
        topic = sns.create_topic(Name="durable")["TopicArn"]
        policy = {
            "healthyRetryPolicy": {"numRetries": 50, "minDelayTarget": 1, "maxDelayTarget": 1}
        }
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint,
                      Attributes={"DeliveryPolicy": json.dumps(policy)})  # fmt: skip
        _wait_for(lambda: len(_Flaky.confirmations) == 1)
        sns.confirm_subscription(TopicArn=topic, Token=_Flaky.confirmations[0]["Token"])
        sent = sns.publish(TopicArn=topic, Message="must arrive")["MessageId"]
        time.sleep(0.3)  # at least one failed attempt before the crash
        server.kill()
        _Flaky.healthy = True
        server.start()
        _wait_for(lambda: any(n["MessageId"] == sent for n in _Flaky.notifications))
        assert _Flaky.notifications[0]["Message"] == "must arrive"
    finally:
        server.close()
        http.shutdown()
