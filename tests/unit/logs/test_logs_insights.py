"""The Logs Insights query subset over in-memory records."""

from __future__ import annotations

import json

import pytest

from nubes.services.logs.insights import QueryError, make_record, parse_query, run_query

BASE = 1_700_000_000_000


def _records() -> list[dict[str, object]]:
    messages = [
        json.dumps({"level": "ERROR", "ms": 120, "user": {"id": "a"}}),
        json.dumps({"level": "INFO", "ms": 20, "user": {"id": "b"}}),
        json.dumps({"level": "ERROR", "ms": 80, "user": {"id": "a"}}),
        "plain text line with timeout",
        "REPORT RequestId: r1\tDuration: 12.50 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 40 MB\tInit Duration: 100.00 ms\t",
    ]
    return [make_record("000000000000:/g", "s1" if i % 2 else "s2", BASE + i * 60_000, m, BASE + i * 60_000)
            for i, m in enumerate(messages)]  # fmt: skip


def _run(query: str, limit: int = 1000) -> list[dict[str, str]]:
    rows = run_query(parse_query(query), _records(), limit)
    return [{c["field"]: c["value"] for c in row} for row in rows]


def test_default_fields_and_filter_like() -> None:
    rows = _run("filter @message like /timeout/")
    assert [r["@message"] for r in rows] == ["plain text line with timeout"]
    assert rows[0]["@timestamp"] == "2023-11-14 22:16:20.000" and rows[0]["@logStream"] == "s1"


def test_json_fields_comparisons_sort_limit() -> None:
    rows = _run('fields level, ms, user.id | filter level = "ERROR" and ms > 50 | sort ms desc | limit 1')
    assert rows == [{"level": "ERROR", "ms": "120", "user.id": "a"}]
    assert len(_run("filter level in [\"ERROR\", \"INFO\"] | fields level")) == 3
    assert len(_run("filter not ispresent(level) | fields @message")) == 2
    assert len(_run('filter level != "ERROR" or ms >= 120 | fields level')) == 4


def test_stats_by_field_and_bin() -> None:
    rows = _run("filter ispresent(level) | stats count(*) as n, avg(ms) as avg_ms, max(ms) by level | sort level")
    assert rows == [{"level": "ERROR", "n": "2", "avg_ms": "100.0", "max(ms)": "120.0"},
                    {"level": "INFO", "n": "1", "avg_ms": "20.0", "max(ms)": "20.0"}]  # fmt: skip
    binned = _run("stats count(*) as c by bin(2m) | sort c desc")
    assert sum(int(r["c"]) for r in binned) == 5 and len(binned) == 3


def test_lambda_report_fields() -> None:
    rows = _run('filter @type = "REPORT" | fields @requestId, @duration, @maxMemoryUsed, @initDuration')
    assert rows == [{"@requestId": "r1", "@duration": "12.5", "@maxMemoryUsed": "40000000",
                     "@initDuration": "100"}]  # fmt: skip


def test_parse_glob_and_regex() -> None:
    rows = _run('parse @message "plain * line with *" as what, why | filter ispresent(why) | display what, why')
    assert rows == [{"what": "text", "why": "timeout"}]
    rows = _run("parse @message /with (?<word>\\w+)/ | filter ispresent(word) | display word")
    assert rows == [{"word": "timeout"}]


@pytest.mark.parametrize("query", ["frobnicate x", "filter (level = ", "stats nothing", "limit many",
                                   "filter x like 5", "stats median(ms)"])  # fmt: skip
def test_malformed_queries(query: str) -> None:
    with pytest.raises(QueryError):
        parse_query(query)
