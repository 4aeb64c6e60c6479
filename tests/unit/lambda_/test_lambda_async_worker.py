"""The async invoke worker with stand-in resolve/run callbacks over a real store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.events.async_invoke import QUEUE, AsyncInvoker, AsyncTarget, event_record
from nubes.settings import Settings

DEST = "arn:aws:lambda:us-east-1:000000000000:function:dest"


def test_an_event_whose_function_cannot_start_goes_to_on_failure(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, Any]]:
        from nubes.storage import open_store

        app = App(Settings.load({"data_dir": str(tmp_path)}, env={}))
        app._store = await open_store(app.settings)
        calls: list[str] = []
        delivered: list[dict[str, Any]] = []

        async def resolve(item: dict[str, Any]) -> AsyncTarget | None:
            if item["function"] != "broken":
                delivered.append(item)  # the OnFailure destination's own event
                return None
            return AsyncTarget(function_arn="arn:aws:lambda:us-east-1:000000000000:function:broken:$LATEST",
                               version="$LATEST", timeout_s=3.0,
                               event_invoke_config={"MaximumRetryAttempts": 1,
                                                    "DestinationConfig": {"OnFailure": {"Destination": DEST}}},
                               retry_delays=(0.01,))  # fmt: skip

        async def run(item: dict[str, Any], target: AsyncTarget) -> Any:
            calls.append(item["request_id"])
            raise AwsError("InvalidRuntimeException", "The runtime cobol is not supported", 502)

        invoker = AsyncInvoker(app, resolve, run)
        worker = asyncio.create_task(invoker.run_forever())
        try:
            await invoker.enqueue(event_record(region="us-east-1", function_name="broken", qualifier=None,
                                               payload=b'{"k": 1}', request_id="req-1"))  # fmt: skip
            for _ in range(500):
                if delivered:
                    break
                await asyncio.sleep(0.02)
            assert calls == ["req-1", "req-1"]  # the first attempt and one retry
            for _ in range(100):  # nothing is left behind once the worker acks
                if not await app.store.read(lambda txn: txn.peek(QUEUE)):
                    break
                await asyncio.sleep(0.02)
            assert await app.store.read(lambda txn: txn.peek(QUEUE)) == []
            return [orjson.loads(r["payload"]) for r in delivered if r["function"] == "dest"]
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await app.store.close()

    [record] = asyncio.run(scenario())
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"] == {"k": 1}
    assert record["responsePayload"]["errorType"] == "InvalidRuntimeException"
