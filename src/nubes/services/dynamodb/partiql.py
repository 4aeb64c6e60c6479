"""PartiQL for DynamoDB: SELECT, INSERT, UPDATE and DELETE with WHERE and ``?``
parameters, translated into the same expression trees the rest of the service
evaluates (paths are literal names, values are literals)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.dynamodb import query
from nubes.services.dynamodb.expressions.evaluate import EMPTY, Bindings, evaluate, project
from nubes.services.dynamodb.expressions.nodes import (
    And,
    Arithmetic,
    Between,
    Compare,
    Condition,
    Function,
    In,
    ListAppend,
    Literal,
    Not,
    Operand,
    Or,
    Path,
    PathElement,
    RemoveAction,
    SetAction,
    Size,
    Update,
)
from nubes.services.dynamodb.expressions.update import apply_update
from nubes.services.dynamodb.items import Effects, check_new_item, read_item, store_item
from nubes.services.dynamodb.keys import extract_key
from nubes.services.dynamodb.prepare import Prepared
from nubes.services.dynamodb.tables import Table, key_names, require_table
from nubes.services.dynamodb.types import (
    AttributeValue,
    Item,
    check_item_size,
    dump_item,
    encode_key_value,
    load_item,
    normalize_number,
    validate_value,
    validation,
)
from nubes.storage.base import Txn

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<qid>\"(?:[^\"]|\"\")*\")|(?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><<|>>|<>|!=|<=|>=|[=<>()\[\]{},.:?*+\-]))"
)
MAX_BATCH = 25


def _malformed(detail: str) -> AwsError:
    return validation(f"Statement wasn't well formed, can't be processed: {detail}")


@dataclass
class Tok:
    """A PartiQL token: kind (str, id, num, op, eof) and text."""

    kind: str
    text: str


def _tokenize(text: str) -> list[Tok]:
    tokens: list[Tok] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            tokens.append(Tok("eof", ""))
            return tokens
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise _malformed(f"Unexpected character: {text[pos]}")
        kind = match.lastgroup
        raw = match.group(kind)
        if kind == "str":
            raw = raw[1:-1].replace("''", "'")
        elif kind == "qid":
            kind, raw = "id", raw[1:-1].replace('""', '"')
        tokens.append(Tok(kind, raw))
        pos = match.end()


@dataclass
class Statement:
    """A parsed statement."""

    verb: str
    table: str
    index: str | None = None
    where: Condition | None = None
    projection: list[tuple[PathElement, ...]] | None = None
    item: AttributeValue | None = None
    update: Update | None = None
    equalities: dict[str, AttributeValue] = field(default_factory=dict)
    #: SELECT ... ORDER BY <sort key> (ASC|DESC)
    order_by: str | None = None
    descending: bool = False
    #: UPDATE/DELETE ... RETURNING ALL|MODIFIED OLD|NEW *
    returning: str | None = None


class _Parser:
    """Recursive descent over PartiQL tokens; each method parses the rule it is
    named after, binding ``?`` parameters in order."""

    def __init__(self, text: str, parameters: list[Any]) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.parameters = [validate_value(p) for p in parameters]
        self.used = 0

    def peek(self, ahead: int = 0) -> Tok:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def take(self) -> Tok:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def word(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "id" and tok.text.upper() in words

    def expect_word(self, word: str) -> None:
        if not self.word(word):
            raise _malformed(f"Expected {word}, found {self.peek().text or 'end of statement'}")
        self.take()

    def expect_op(self, op: str) -> None:
        tok = self.peek()
        if tok.kind != "op" or tok.text != op:
            raise _malformed(f"Expected {op}, found {tok.text or 'end of statement'}")
        self.take()

    def is_op(self, op: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.text == op

    # -- values and paths ---------------------------------------------------------

    def value(self) -> AttributeValue:
        tok = self.take()
        if tok.kind == "str":
            return {"S": tok.text}
        if tok.kind == "num":
            return {"N": normalize_number(tok.text)}
        if tok.kind == "op" and tok.text == "?":
            if self.used >= len(self.parameters):
                raise validation("Number of parameters in request and statement don't match.")
            self.used += 1
            return self.parameters[self.used - 1]
        if tok.kind == "id" and tok.text.upper() in ("TRUE", "FALSE"):
            return {"BOOL": tok.text.upper() == "TRUE"}
        if tok.kind == "id" and tok.text.upper() == "NULL":
            return {"NULL": True}
        if tok.kind == "op" and tok.text == "[":
            return {"L": self.sequence("]")}
        if tok.kind == "op" and tok.text == "<<":
            return _as_set(self.sequence(">>"))
        if tok.kind == "op" and tok.text == "{":
            return {"M": self.mapping()}
        raise _malformed(f"Unexpected token: {tok.text or 'end of statement'}")

    def sequence(self, close: str) -> list[AttributeValue]:
        out: list[AttributeValue] = []
        while not self.is_op(close):
            out.append(self.value())
            if not self.is_op(close):
                self.expect_op(",")
        self.take()
        return out

    def mapping(self) -> dict[str, AttributeValue]:
        out: dict[str, AttributeValue] = {}
        while not self.is_op("}"):
            key = self.take()
            if key.kind not in ("str", "id"):
                raise _malformed(f"Unexpected token: {key.text}")
            self.expect_op(":")
            out[key.text] = self.value()
            if not self.is_op("}"):
                self.expect_op(",")
        self.take()
        return out

    def path(self) -> Path:
        first = self.take()
        if first.kind != "id":
            raise _malformed(f"Unexpected path component: {first.text or 'end of statement'}")
        elements: list[PathElement] = [first.text]
        while True:
            if self.is_op("."):
                self.take()
                name = self.take()
                if name.kind != "id":
                    raise _malformed(f"Unexpected path component: {name.text}")
                elements.append(name.text)
            elif self.is_op("["):
                self.take()
                index = self.take()
                if index.kind != "num" or not index.text.isdigit():
                    raise _malformed(f"Unexpected path component: {index.text}")
                elements.append(int(index.text))
                self.expect_op("]")
            else:
                return Path(tuple(elements), literal=True)

    def operand(self) -> Operand:
        tok = self.peek()
        if tok.kind == "id" and tok.text.upper() not in ("TRUE", "FALSE", "NULL"):
            if tok.text.lower() == "size" and self.peek(1).text == "(":
                self.take()
                self.expect_op("(")
                path = self.path()
                self.expect_op(")")
                return Size(path)
            return self.path()
        return Literal(self.value())

    # -- conditions -------------------------------------------------------------

    def condition(self) -> Condition:
        left = self.conjunction()
        while self.word("OR"):
            self.take()
            left = Or(left, self.conjunction())
        return left

    def conjunction(self) -> Condition:
        left = self.negation()
        while self.word("AND"):
            self.take()
            left = And(left, self.negation())
        return left

    def negation(self) -> Condition:
        if self.word("NOT"):
            self.take()
            return Not(self.negation())
        if self.is_op("("):
            self.take()
            inner = self.condition()
            self.expect_op(")")
            return inner
        tok = self.peek()
        name = tok.text.lower()
        if tok.kind == "id" and self.peek(1).text == "(" and name in ("begins_with", "contains", "attribute_type"):
            self.take()
            self.expect_op("(")
            target = self.path()
            self.expect_op(",")
            argument = self.operand()
            self.expect_op(")")
            return Function(name, (target, argument))
        left = self.operand()
        return self.predicate(left)

    def predicate(self, left: Operand) -> Condition:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("=", "<>", "!=", "<", "<=", ">", ">="):
            self.take()
            return Compare("<>" if tok.text == "!=" else tok.text, left, self.operand())
        if self.word("IS"):
            self.take()
            negate = self.word("NOT")
            if negate:
                self.take()
            if not isinstance(left, Path):
                raise _malformed("IS needs a path")
            if self.word("MISSING"):
                self.take()
                return Function("attribute_exists" if negate else "attribute_not_exists", (left,))
            self.expect_word("NULL")
            check: Condition = Compare("=", left, Literal({"NULL": True}))
            return Not(check) if negate else check
        if self.word("BETWEEN"):
            self.take()
            low = self.operand()
            self.expect_word("AND")
            return Between(left, low, self.operand())
        if self.word("IN"):
            self.take()
            close = "]" if self.is_op("[") else ")"
            self.take()
            options: list[Operand] = []
            while not self.is_op(close):
                options.append(self.operand())
                if not self.is_op(close):
                    self.expect_op(",")
            self.take()
            return In(left, tuple(options))
        raise _malformed(f"Unexpected token: {tok.text or 'end of statement'}")

    # -- statements -------------------------------------------------------------------

    def statement(self) -> Statement:
        verb = self.take().text.upper()
        if verb == "SELECT":
            stmt = self.select()
        elif verb == "INSERT":
            self.expect_word("INTO")
            table = self.table_name()
            self.expect_word("VALUE")
            item = self.value()
            if "M" not in item:
                raise _malformed("INSERT needs a map VALUE")
            stmt = Statement("INSERT", table, item=item)
        elif verb == "UPDATE":
            stmt = self.update()
        elif verb == "DELETE":
            self.expect_word("FROM")
            stmt = Statement("DELETE", self.table_name())
            self.where(stmt)
            self.returning(stmt, ("ALL OLD",))
        else:
            raise _malformed(f"Unsupported statement: {verb or 'empty'}")
        if self.peek().kind != "eof":
            raise _malformed(f"Unexpected token: {self.peek().text}")
        if self.used != len(self.parameters):
            raise validation("Number of parameters in request and statement don't match.")
        return stmt

    def table_name(self) -> str:
        tok = self.take()
        if tok.kind != "id":
            raise _malformed(f"Expected a table name, found {tok.text or 'end of statement'}")
        return tok.text

    def select(self) -> Statement:
        projection: list[tuple[PathElement, ...]] | None = None
        if self.is_op("*"):
            self.take()
        else:
            projection = [self.path().elements]
            while self.is_op(","):
                self.take()
                projection.append(self.path().elements)
        self.expect_word("FROM")
        table = self.table_name()
        index = None
        if self.is_op("."):
            self.take()
            index = self.table_name()
        stmt = Statement("SELECT", table, index=index, projection=projection)
        if self.word("WHERE"):
            self.where(stmt)
        if self.word("ORDER"):
            self.take()
            self.expect_word("BY")
            stmt.order_by = str(self.path().elements[0])
            if self.word("ASC", "DESC"):
                stmt.descending = self.take().text.upper() == "DESC"
        return stmt

    def returning(self, stmt: Statement, allowed: tuple[str, ...]) -> None:
        if not self.word("RETURNING"):
            return
        self.take()
        words = [self.take().text.upper(), self.take().text.upper()]
        mode = " ".join(words)
        if mode not in allowed:
            raise _malformed(f"Unsupported RETURNING option: {mode}")
        self.expect_op("*")
        stmt.returning = mode

    def where(self, stmt: Statement) -> None:
        self.expect_word("WHERE")
        stmt.where = self.condition()
        stmt.equalities = _equalities(stmt.where)

    def update(self) -> Statement:
        stmt = Statement("UPDATE", self.table_name())
        sets: list[SetAction] = []
        removes: list[RemoveAction] = []
        while self.word("SET", "REMOVE"):
            clause = self.take().text.upper()
            while True:
                path = self.path()
                if clause == "SET":
                    self.expect_op("=")
                    sets.append(SetAction(path, self.set_value(path)))
                else:
                    removes.append(RemoveAction(path))
                if not self.is_op(","):
                    break
                self.take()
        if not sets and not removes:
            raise _malformed("UPDATE needs SET or REMOVE")
        stmt.update = Update(tuple(sets), tuple(removes))
        self.where(stmt)
        self.returning(stmt, ("ALL OLD", "ALL NEW", "MODIFIED OLD", "MODIFIED NEW"))
        return stmt

    def set_value(self, target: Path) -> Any:
        left = self.operand()
        if self.is_op("+") or self.is_op("-"):
            op = self.take().text
            return Arithmetic(op, left, self.operand())  # type: ignore[arg-type]
        if isinstance(left, Path) and left.elements == ("list_append",) and self.is_op("("):
            self.take()
            first = self.operand()
            self.expect_op(",")
            second = self.operand()
            self.expect_op(")")
            return ListAppend(first, second)  # type: ignore[arg-type]
        if isinstance(left, Size):
            raise _malformed("size() cannot be assigned")
        return left


def _as_set(values: list[AttributeValue]) -> AttributeValue:
    if not values:
        raise _malformed("empty set")
    kinds = {next(iter(v)) for v in values}
    if len(kinds) != 1 or next(iter(kinds)) not in ("S", "N", "B"):
        raise _malformed("sets hold strings, numbers or binaries of one type")
    kind = next(iter(kinds))
    return validate_value({kind + "S": [v[kind] for v in values]})


def _equalities(node: Condition) -> dict[str, AttributeValue]:
    """Top-level ``attr = literal`` conjuncts (to find keys and partitions)."""
    if isinstance(node, And):
        return {**_equalities(node.left), **_equalities(node.right)}
    if isinstance(node, Compare) and node.op == "=":
        pairs = [(node.left, node.right), (node.right, node.left)]
        for path, value in pairs:
            if isinstance(path, Path) and len(path.elements) == 1 and isinstance(value, Literal):
                return {str(path.elements[0]): value.value}
    return {}


# -- execution ---------------------------------------------------------------------------


def _key_from_where(table: Table, stmt: Statement) -> Item:
    hash_key, range_key = key_names(table["KeySchema"])
    key: Item = {}
    for name in (hash_key, range_key):
        if name is None:
            continue
        if name not in stmt.equalities:
            raise validation("Where clause does not contain a mandatory equality on all key attributes")
        key[name] = stmt.equalities[name]
    return key


def _select(txn: Txn, region: str, stmt: Statement, params: dict[str, Any]) -> dict[str, Any]:
    table = require_table(txn, region, stmt.table)
    request: dict[str, Any] = {"IndexName": stmt.index, "Limit": params.get("Limit")}
    if params.get("NextToken"):
        try:
            request["ExclusiveStartKey"] = load_item(base64.b64decode(params["NextToken"]))
        except ValueError:
            raise validation("Invalid NextToken") from None
    source = query.source_for(table, {"IndexName": stmt.index})
    if stmt.order_by is not None:
        if stmt.order_by != source.range_key or source.hash_key not in stmt.equalities:
            raise validation(
                "ORDER BY is supported only on the sort key, with an equality on the partition key in the WHERE clause"
            )
        request["ScanIndexForward"] = not stmt.descending
    prefix = source.prefix()
    partition = stmt.equalities.get(source.hash_key)
    if partition is not None and next(iter(partition)) in ("S", "N", "B"):
        prefix += encode_key_value(partition)
    prepared = Prepared(EMPTY, filter=stmt.where)
    page = query.read_page(txn, source, {k: v for k, v in request.items() if v is not None}, prepared, (prefix, None, None))
    items = page.get("Items", [])
    if stmt.projection is not None:
        items = [project(item, stmt.projection) for item in items]
    out: dict[str, Any] = {"Items": items}
    if "LastEvaluatedKey" in page:
        out["NextToken"] = base64.b64encode(dump_item(page["LastEvaluatedKey"])).decode()
        out["LastEvaluatedKey"] = page["LastEvaluatedKey"]
    return out


def _run(txn: Txn, region: str, stmt: Statement, params: dict[str, Any], effects: Effects) -> dict[str, Any]:
    if stmt.verb == "SELECT":
        return _select(txn, region, stmt, params)
    table = require_table(txn, region, stmt.table)
    bindings: Bindings = EMPTY
    if stmt.verb == "INSERT":
        assert stmt.item is not None
        item: Item = stmt.item["M"]
        check_new_item(table, item)
        if read_item(txn, table, extract_key(table, item)) is not None:
            raise AwsError("DuplicateItemException", "Duplicate primary key exists in table", 400)
        store_item(txn, table, None, item, effects)
        return {}
    key = _key_from_where(table, stmt)
    old = read_item(txn, table, key)
    matches = old is not None and stmt.where is not None and evaluate(stmt.where, old, bindings)
    if stmt.verb == "DELETE":
        if old is not None and not matches:
            raise AwsError("ConditionalCheckFailedException", "The conditional request failed", 400)
        store_item(txn, table, old, None, effects)
        return {"Items": [old]} if stmt.returning and old is not None else {}
    if old is None or not matches:
        raise AwsError("ConditionalCheckFailedException", "The conditional request failed", 400)
    assert stmt.update is not None
    new, touched = apply_update(stmt.update, dict(old), bindings)
    if touched & set(key):
        raise validation(f"Cannot update attribute {sorted(touched & set(key))[0]}. This attribute is part of the key")
    check_new_item(table, new)
    check_item_size(new, update=True)
    store_item(txn, table, old, new, effects)
    if stmt.returning is None:
        return {}
    image = new if stmt.returning.endswith("NEW") else old
    if stmt.returning.startswith("MODIFIED"):
        image = {name: value for name, value in image.items() if name in touched}
    return {"Items": [image]}


def parse_statement(text: str, parameters: list[Any] | None) -> Statement:
    """Parse one statement with its ``?`` parameters bound."""
    if not text.strip():
        raise _malformed("empty statement")
    return _Parser(text, list(parameters or [])).statement()


def run_statement(txn: Txn, region: str, stmt: Statement, params: dict[str, Any], effects: Effects) -> dict[str, Any]:
    """ExecuteStatement of a parsed statement (SELECTs only read)."""
    return _run(txn, region, stmt, params, effects)


def execute_transaction(txn: Txn, region: str, statements: list[Statement], effects: Effects) -> dict[str, Any]:
    """ExecuteTransaction: all statements or none. Reads only (all SELECT with a
    full key) or writes only, as DynamoDB requires; a failed statement cancels
    the transaction with a reason per statement."""
    verbs = {stmt.verb == "SELECT" for stmt in statements}
    if len(verbs) > 1:
        raise validation("Transaction statements must be either all reads or all writes")
    reasons: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []
    failed = False
    seen: set[tuple[str, str]] = set()
    for stmt in statements:
        marker = (stmt.table, repr(sorted(stmt.equalities.items())) if stmt.verb != "INSERT" else repr(stmt.item))
        if marker in seen:
            raise validation("Transaction request cannot include multiple operations on one item")
        seen.add(marker)
        try:
            result = _run(txn, region, stmt, {}, effects)
        except AwsError as err:
            if err.code not in ("ConditionalCheckFailedException", "DuplicateItemException"):
                raise
            reasons.append({"Code": err.code.removesuffix("Exception"), "Message": err.message})
            failed = True
            continue
        reasons.append({"Code": "None"})
        if stmt.verb == "SELECT":
            found = result.get("Items") or []
            responses.append({"Item": found[0]} if found else {})
    if failed:
        codes = ", ".join(r["Code"] for r in reasons)
        raise AwsError(
            "TransactionCanceledException",
            f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
            400,
            fields={"CancellationReasons": reasons},
        )
    return {"Responses": responses} if responses else {}


def batch_execute(txn: Txn, region: str, params: dict[str, Any], effects: Effects) -> dict[str, Any]:
    """BatchExecuteStatement: each statement succeeds or reports its own error."""
    statements = params["Statements"]
    if len(statements) > MAX_BATCH:
        raise validation("Too many statements in the batch: the limit is 25")
    responses: list[dict[str, Any]] = []
    for entry in statements:
        try:
            stmt = parse_statement(entry["Statement"], entry.get("Parameters"))
            if stmt.verb == "SELECT" and (stmt.where is None or not stmt.equalities):
                raise validation("Batch read statements must specify a full primary key")
            result = _run(txn, region, stmt, {}, effects)
            response: dict[str, Any] = {"TableName": stmt.table}
            if stmt.verb == "SELECT" and result.get("Items"):
                response["Item"] = result["Items"][0]
            responses.append(response)
        except AwsError as err:
            code = err.code.replace("Exception", "") if err.code != "ValidationException" else "ValidationError"
            responses.append({"Error": {"Code": code, "Message": err.message}})
    return {"Responses": responses}
