"""Parsing the PartiQL subset: statements, literals, parameters, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.expressions.evaluate import EMPTY, evaluate
from nubes.services.dynamodb.partiql import parse_statement


def test_select_with_index_projection_and_where() -> None:
    stmt = parse_statement(
        'SELECT a, b.c[1] FROM "orders"."by-status" WHERE pk = ? AND sk >= 5', [{"S": "x"}]
    )
    assert (stmt.verb, stmt.table, stmt.index) == ("SELECT", "orders", "by-status")
    assert stmt.projection == [("a",), ("b", "c", 1)]
    assert stmt.equalities == {"pk": {"S": "x"}}


def test_insert_literals() -> None:
    stmt = parse_statement(
        "INSERT INTO t VALUE {'pk': 'it''s', 'n': -1.50, 'ok': true, 'no': null, 'l': [1, 'a'], "
        "'m': {'k': <<1, 2>>}, 'ss': <<'a', 'b'>>, 'p': ?}",
        [{"B": b"\x01"}],
    )
    assert stmt.item == {"M": {
        "pk": {"S": "it's"}, "n": {"N": "-1.5"}, "ok": {"BOOL": True}, "no": {"NULL": True},
        "l": {"L": [{"N": "1"}, {"S": "a"}]}, "m": {"M": {"k": {"NS": ["1", "2"]}}}, "ss": {"SS": ["a", "b"]},
        "p": {"B": b"\x01"},
    }}  # fmt: skip


def test_update_and_delete() -> None:
    stmt = parse_statement(
        "UPDATE t SET a = a + 1, b = 'x' SET c = list_append(c, [1]) REMOVE d WHERE pk = 'k'", None
    )
    assert stmt.update is not None
    assert len(stmt.update.set) == 3 and len(stmt.update.remove) == 1
    assert stmt.equalities == {"pk": {"S": "k"}}
    stmt = parse_statement("DELETE FROM t WHERE pk = 'k' AND sk = 2 AND flag IS NOT MISSING", None)
    assert stmt.equalities == {"pk": {"S": "k"}, "sk": {"N": "2"}}


@pytest.mark.parametrize(
    ("where", "item", "expected"),
    [
        ("a = 1", {"a": {"N": "1"}}, True),
        ("a != 1", {"a": {"N": "1"}}, False),
        ("a IN [1, 2]", {"a": {"N": "2"}}, True),
        ("a BETWEEN 1 AND 3", {"a": {"N": "4"}}, False),
        ("begins_with(s, 'ab')", {"s": {"S": "abc"}}, True),
        ("contains(l, 'x')", {"l": {"L": [{"S": "x"}]}}, True),
        ("a IS MISSING", {}, True),
        ("a IS NULL", {"a": {"NULL": True}}, True),
        ("NOT (a = 1 OR a = 2)", {"a": {"N": "3"}}, True),
        ("size(s) > 2", {"s": {"S": "abc"}}, True),
    ],
)
def test_where_conditions(where: str, item: dict[str, Any], expected: bool) -> None:
    stmt = parse_statement(f"SELECT * FROM t WHERE {where}", None)
    assert stmt.where is not None
    assert evaluate(stmt.where, item, EMPTY) is expected


@pytest.mark.parametrize(
    ("statement", "parameters", "message"),
    [
        ("", None, "Statement wasn't well formed, can't be processed: empty statement"),
        ("SELEKT * FROM t", None, "Statement wasn't well formed, can't be processed: Unsupported statement: SELEKT"),
        ("SELECT * FROM", None, "Statement wasn't well formed, can't be processed: Expected a table name, found end of statement"),
        ("SELECT * FROM t WHERE a = ?", None, "Number of parameters in request and statement don't match."),
        ("SELECT * FROM t", [{"S": "x"}], "Number of parameters in request and statement don't match."),
        ("INSERT INTO t VALUE 'x'", None, "Statement wasn't well formed, can't be processed: INSERT needs a map VALUE"),
        ("SELECT * FROM t WHERE a = 1 extra", None, "Statement wasn't well formed, can't be processed: Unexpected token: extra"),
        ("SELECT * FROM t WHERE a = #", None, "Statement wasn't well formed, can't be processed: Unexpected character: #"),
        ("UPDATE t WHERE pk = 'a'", None, "Statement wasn't well formed, can't be processed: UPDATE needs SET or REMOVE"),
        ("INSERT INTO t VALUE {'s': <<'a', 1>>}", None, "Statement wasn't well formed, can't be processed: sets hold strings, numbers or binaries of one type"),
        ("INSERT INTO t VALUE {'n': 1e999}", None, "Number overflow. Attempting to store a number with magnitude larger than supported range"),
    ],
)  # fmt: skip
def test_bad_statements(statement: str, parameters: list[Any] | None, message: str) -> None:
    with pytest.raises(AwsError) as exc:
        parse_statement(statement, parameters)
    assert (exc.value.code, exc.value.message) == ("ValidationException", message)
