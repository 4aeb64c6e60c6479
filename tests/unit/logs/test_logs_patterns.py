"""The CloudWatch Logs filter pattern language."""

from __future__ import annotations

import pytest

from nubes.services.logs.patterns import PatternError, compile_pattern


@pytest.mark.parametrize(
    ("pattern", "message", "expected"),
    [
        ("", "anything", True),
        ("ERROR", "[ERROR] boom", True),
        ("ERROR", "error boom", False),  # case-sensitive
        ("ERROR boom", "[ERROR] boom", True),
        ("ERROR boom", "[ERROR] bang", False),
        ('"disk full"', "warning: disk full now", True),
        ('"disk full"', "disk is full", False),
        ("ERROR -timeout", "ERROR timeout", False),
        ("ERROR -timeout", "ERROR crash", True),
        ("?ERROR ?WARN", "WARN low disk", True),
        ("?ERROR ?WARN", "INFO fine", False),
        ("%[0-9]{3}ms%", "took 123ms", True),
        ("%[0-9]{3}ms%", "took 12ms", False),
    ],
)
def test_term_patterns(pattern: str, message: str, expected: bool) -> None:
    assert compile_pattern(pattern)(message) is expected


@pytest.mark.parametrize(
    ("pattern", "message", "expected"),
    [
        ('{ $.level = "ERROR" }', '{"level": "ERROR", "msg": "x"}', True),
        ('{ $.level = "ERROR" }', '{"level": "INFO"}', False),
        ('{ $.level = "ERROR" }', "not json", False),
        ('{ $.level != "ERROR" }', '{"level": "INFO"}', True),
        ('{ $.level = "ERR*" }', '{"level": "ERROR"}', True),
        ("{ $.latency > 100 }", '{"latency": 150}', True),
        ("{ $.latency > 100 }", '{"latency": 50}', False),
        ("{ $.latency > 100 }", '{"latency": "150"}', False),
        ("{ $.latency <= 50 }", '{"latency": 50}', True),
        ('{ $.a.b[1].c = "x" }', '{"a": {"b": [{}, {"c": "x"}]}}', True),
        ('{ $.level = "ERROR" && $.code = 500 }', '{"level": "ERROR", "code": 500}', True),
        ('{ $.level = "ERROR" && $.code = 500 }', '{"level": "ERROR", "code": 404}', False),
        ('{ $.level = "ERROR" || $.code = 500 }', '{"level": "INFO", "code": 500}', True),
        ('{ ($.a = 1 || $.b = 2) && $.c = 3 }', '{"b": 2, "c": 3}', True),
        ('{ ($.a = 1 || $.b = 2) && $.c = 3 }', '{"b": 2, "c": 4}', False),
        ("{ $.ok IS TRUE }", '{"ok": true}', True),
        ("{ $.ok IS FALSE }", '{"ok": true}', False),
        ("{ $.v IS NULL }", '{"v": null}', True),
        ("{ $.v NOT EXISTS }", '{"w": 1}', True),
        ("{ $.v NOT EXISTS }", '{"v": 1}', False),
        ('{ $.level = "ERROR" }', 'INFO 2024 {"level": "ERROR"}', True),
    ],
)
def test_json_patterns(pattern: str, message: str, expected: bool) -> None:
    assert compile_pattern(pattern)(message) is expected


@pytest.mark.parametrize(
    ("pattern", "message", "expected"),
    [
        ("[ip, user, status=404, size]", "1.2.3.4 bob 404 100", True),
        ("[ip, user, status=404, size]", "1.2.3.4 bob 200 100", False),
        ("[ip, ..., size>1000]", "1.2.3.4 a b c 2000", True),
        ("[ip, ..., size>1000]", "1.2.3.4 a b c 20", False),
        ('[ip, req, status=5*]', '1.2.3.4 "GET / HTTP/1.1" 503', True),
    ],
)
def test_space_delimited_patterns(pattern: str, message: str, expected: bool) -> None:
    assert compile_pattern(pattern)(message) is expected


@pytest.mark.parametrize(
    "pattern",
    ['{ $.level = "ERROR" ', "{ level = 1 }", "{ $.a > }", '"unterminated', "%bad(%", "{ $.a > 1 && }"],
)
def test_malformed_patterns_raise(pattern: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(pattern)
