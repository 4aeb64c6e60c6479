"""Recursive-descent parser of condition, key condition, projection and update
expressions. Precedence, loosest first: OR, AND, NOT, then comparisons, BETWEEN,
IN and functions. Parses are cached by text: trees keep placeholders unbound."""

from __future__ import annotations

from functools import lru_cache

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.expressions.lexer import (
    Token,
    expression_error,
    syntax_error,
    tokenize,
)
from nubes.services.dynamodb.expressions.nodes import (
    AddAction,
    And,
    Arithmetic,
    Between,
    Compare,
    Condition,
    DeleteAction,
    Function,
    IfNotExists,
    In,
    ListAppend,
    Not,
    Operand,
    Or,
    Path,
    PathElement,
    RemoveAction,
    SetAction,
    SetOperand,
    SetValue,
    Size,
    Update,
    Value,
)
from nubes.services.dynamodb.expressions.reserved import RESERVED_WORDS

COMPARATORS = ("=", "<>", "<", "<=", ">", ">=")
CONDITION_FUNCTIONS = {
    "attribute_exists": 1,
    "attribute_not_exists": 1,
    "attribute_type": 2,
    "begins_with": 2,
    "contains": 2,
}
UPDATE_FUNCTIONS = ("if_not_exists", "list_append")
CLAUSES = ("SET", "REMOVE", "ADD", "DELETE")
_MAX_OPERANDS_IN = 100
MAX_OPERATORS = 300
#: parentheses/NOT levels (each costs a few Python frames while parsing)
MAX_NESTING = 200
#: a path may go 32 levels below its top-level attribute
MAX_PATH_DEPTH = 32
MAX_LIST_INDEX = 2**31 - 1


class Parser:
    """One parse of one expression text: each method parses the grammar rule
    it is named after and returns its tree, raising DynamoDB's error on the
    first token that does not fit."""

    def __init__(self, text: str, kind: str) -> None:
        self.text = text
        self.kind = kind
        self.tokens = tokenize(text, kind)
        self.pos = 0
        #: ids of condition nodes that came out of a pair of parentheses
        self.parenthesised: set[int] = set()
        self.operators = 0
        self.depth = 0

    def count_operator(self) -> None:
        """DynamoDB allows at most 300 operators and functions per expression."""
        self.operators += 1
        if self.operators > MAX_OPERATORS:
            raise expression_error(
                self.kind, f"The expression contains too many operators; the limit is {MAX_OPERATORS}"
            )

    def enter(self) -> None:
        """Nesting (parentheses, NOT) is bounded too, so parsing never recurses deep."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise expression_error(self.kind, f"The expression is nested too deeply; the limit is {MAX_NESTING}")

    # -- token helpers ----------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        index = min(self.pos + ahead, len(self.tokens) - 1)
        return self.tokens[index]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind != "eof":
            self.pos += 1
        return token

    def error(self, token: Token | None = None) -> AwsError:
        bad = token or self.peek()
        index = self.tokens.index(bad) if bad in self.tokens else self.pos
        return syntax_error(self.kind, self.text, self.tokens[:index], bad)

    def expect(self, text: str) -> Token:
        token = self.peek()
        if token.text != text or token.kind not in ("op",):
            raise self.error(token)
        return self.take()

    def is_keyword(self, word: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == "name" and token.upper() == word

    def finish(self) -> None:
        if self.peek().kind != "eof":
            raise self.error()

    # -- paths and operands -------------------------------------------------------

    def path_element(self) -> str:
        token = self.peek()
        if token.kind == "hash":
            return self.take().text
        if token.kind == "name":
            if token.upper() in RESERVED_WORDS:
                raise expression_error(
                    self.kind, f"Attribute name is a reserved keyword; reserved keyword: {token.text}"
                )
            return self.take().text
        raise self.error(token)

    def path(self) -> Path:
        elements: list[PathElement] = [self.path_element()]
        while True:
            token = self.peek()
            if token.kind == "op" and token.text == ".":
                self.take()
                elements.append(self.path_element())
            elif token.kind == "op" and token.text == "[":
                self.take()
                index = self.peek()
                if index.kind != "int":
                    raise self.error(index)
                self.take()
                self.expect("]")
                if int(index.text) > MAX_LIST_INDEX:
                    raise expression_error(
                        self.kind, f"List index is above the maximum supported value; index: {index.text}"
                    )
                elements.append(int(index.text))
            else:
                if len(elements) > MAX_PATH_DEPTH:
                    raise expression_error(
                        self.kind,
                        "The document path has too many nesting levels; nesting levels: " + str(len(elements) - 1),
                    )
                return Path(tuple(elements))

    def is_call(self) -> bool:
        return self.peek().kind == "name" and self.peek(1).kind == "op" and self.peek(1).text == "("

    def call_args(self, name: str) -> list[Operand | SetValue]:
        self.expect("(")
        args: list[Operand | SetValue] = []
        if not (self.peek().kind == "op" and self.peek().text == ")"):
            while True:
                args.append(self.any_operand())
                if self.peek().kind == "op" and self.peek().text == ",":
                    self.take()
                    continue
                break
        self.expect(")")
        return args

    def any_operand(self) -> Operand | SetValue:
        """An operand inside a function call (condition or update context)."""
        if self.is_call() and self.peek().text in UPDATE_FUNCTIONS:
            return self.set_operand()
        return self.operand()

    def operand(self) -> Operand:
        token = self.peek()
        if token.kind == "colon":
            self.take()
            return Value(token.text)
        if self.is_call():
            name = token.text
            lowered = name  # function names are case-sensitive
            if lowered == "size":
                self.take()
                args = self.call_args(name)
                self.require_count(args, "size", 1)
                target = args[0]
                if not isinstance(target, Path | Value):
                    raise expression_error(
                        self.kind, "The function is not allowed to be used this way in an expression; function: size"
                    )
                return Size(target)
            if lowered in UPDATE_FUNCTIONS:
                raise expression_error(
                    self.kind, f"The function is not allowed in a condition expression; function: {name}"
                )
            if lowered in CONDITION_FUNCTIONS:
                raise expression_error(
                    self.kind,
                    f"The function is not allowed to be used this way in an expression; function: {name}",
                )
            raise expression_error(self.kind, f"Invalid function name; function: {name}")
        if token.kind in ("name", "hash"):
            return self.path()
        raise self.error(token)

    def require_count(self, args: list[Operand | SetValue], function: str, count: int) -> None:
        if len(args) != count:
            raise expression_error(
                self.kind,
                "Incorrect number of operands for operator or function; "
                f"operator or function: {function}, number of operands: {len(args)}",
            )

    def require_path(self, args: list[Operand | SetValue], function: str, count: int) -> Path:
        self.require_count(args, function, count)
        first = args[0]
        if not isinstance(first, Path):
            raise expression_error(
                self.kind, f"Operator or function requires a document path; operator or function: {function}"
            )
        return first

    # -- conditions -----------------------------------------------------------------

    def condition(self) -> Condition:
        left = self.conjunction()
        while self.is_keyword("OR"):
            self.take()
            self.count_operator()
            left = Or(left, self.conjunction())
        return left

    def conjunction(self) -> Condition:
        left = self.negation()
        while self.is_keyword("AND"):
            self.take()
            self.count_operator()
            left = And(left, self.negation())
        return left

    def negation(self) -> Condition:
        if self.is_keyword("NOT"):
            self.take()
            self.count_operator()
            self.enter()
            inner = self.negation()
            self.depth -= 1
            return Not(inner)
        return self.primary()

    def primary(self) -> Condition:
        token = self.peek()
        if token.kind == "op" and token.text == "(":
            self.take()
            self.enter()
            inner = self.condition()
            self.depth -= 1
            self.expect(")")
            # "((a = :v))": DynamoDB refuses parentheses directly around parentheses
            if id(inner) in self.parenthesised:
                raise expression_error(self.kind, "The expression has redundant parentheses;")
            self.parenthesised.add(id(inner))
            return inner
        if self.is_call() and token.text in CONDITION_FUNCTIONS:
            return self.function()
        left = self.operand()
        return self.predicate(left)

    def function(self) -> Function:
        name = self.take().text
        lowered = name
        args = self.call_args(name)
        if lowered in ("attribute_exists", "attribute_not_exists"):
            self.require_path(args, name, 1)
        else:
            # the others take values as well as paths in either position
            self.require_count(args, name, CONDITION_FUNCTIONS[lowered])
        if lowered == "attribute_type" and not isinstance(args[1], Value):
            raise expression_error(
                self.kind,
                "Incorrect operand type for operator or function; operator or function: attribute_type, "
                "operand type: the type must be given as an expression attribute value",
            )
        if lowered == "contains" and isinstance(args[0], Path) and args[0] == args[1]:
            raise expression_error(
                self.kind,
                "The first operand must be distinct from the remaining operands for this operator or "
                f"function; operator: contains, first operand: [{', '.join(str(e) for e in args[0].elements)}]",
            )
        operands: list[Operand] = []
        for arg in args:
            if not isinstance(arg, Path | Value | Size):
                raise expression_error(
                    self.kind,
                    f"The function is not allowed to be used this way in an expression; function: {name}",
                )
            operands.append(arg)
        if self.peek().kind == "op" and self.peek().text in COMPARATORS:
            raise self.error()
        self.count_operator()
        return Function(lowered, tuple(operands))

    def predicate(self, left: Operand) -> Condition:
        token = self.peek()
        self.count_operator()
        if token.kind == "op" and token.text in COMPARATORS:
            self.take()
            return Compare(token.text, left, self.operand())
        if self.is_keyword("BETWEEN"):
            self.take()
            low = self.operand()
            if not self.is_keyword("AND"):
                raise self.error()
            self.take()
            return Between(left, low, self.operand())
        if self.is_keyword("IN"):
            self.take()
            self.expect("(")
            options = [self.operand()]
            while self.peek().kind == "op" and self.peek().text == ",":
                self.take()
                options.append(self.operand())
            self.expect(")")
            if len(options) > _MAX_OPERANDS_IN:
                raise expression_error(
                    self.kind,
                    "The IN operator is provided with too many operands; number of operands: "
                    f"{len(options)}",
                )
            return In(left, tuple(options))
        raise self.error(token)

    # -- update expressions -------------------------------------------------------------

    def update(self) -> Update:
        clauses: dict[str, list[object]] = {}
        if self.peek().kind == "eof":
            raise expression_error(self.kind, "The expression can not be empty;")
        while self.peek().kind != "eof":
            token = self.peek()
            word = token.upper() if token.kind == "name" else ""
            if word not in CLAUSES:
                raise self.error(token)
            if word in clauses:
                raise expression_error(
                    self.kind, f'The "{word}" section can only be used once in an update expression;'
                )
            self.take()
            clauses[word] = self.actions(word)
        return Update(
            set=tuple(clauses.get("SET", ())),  # type: ignore[arg-type]
            remove=tuple(clauses.get("REMOVE", ())),  # type: ignore[arg-type]
            add=tuple(clauses.get("ADD", ())),  # type: ignore[arg-type]
            delete=tuple(clauses.get("DELETE", ())),  # type: ignore[arg-type]
        )

    def actions(self, clause: str) -> list[object]:
        actions: list[object] = []
        while True:
            path = self.path()
            if clause == "SET":
                self.expect("=")
                actions.append(SetAction(path, self.set_value()))
            elif clause == "REMOVE":
                actions.append(RemoveAction(path))
            else:
                token = self.peek()
                if token.kind != "colon":
                    raise self.error(token)
                self.take()
                value = Value(token.text)
                actions.append(AddAction(path, value) if clause == "ADD" else DeleteAction(path, value))
            if self.peek().kind == "op" and self.peek().text == ",":
                self.take()
                continue
            return actions

    def set_value(self) -> SetValue:
        left = self.set_operand()
        token = self.peek()
        if token.kind == "op" and token.text in ("+", "-"):
            self.take()
            return Arithmetic(token.text, left, self.set_operand())
        return left

    def set_operand(self) -> SetOperand:
        token = self.peek()
        if token.kind == "colon":
            self.take()
            return Value(token.text)
        if self.is_call():
            name = token.text
            lowered = name  # function names are case-sensitive
            if lowered not in UPDATE_FUNCTIONS:
                if lowered in CONDITION_FUNCTIONS or lowered == "size":
                    raise expression_error(
                        self.kind,
                        f"The function is not allowed in an update expression; function: {name}",
                    )
                raise expression_error(self.kind, f"Invalid function name; function: {name}")
            self.take()
            args = self.call_args(name)
            if len(args) != 2:
                raise expression_error(
                    self.kind,
                    "Incorrect number of operands for operator or function; "
                    f"operator or function: {name}, number of operands: {len(args)}",
                )
            first, second = (self._as_set_operand(arg, name) for arg in args)
            if lowered == "if_not_exists":
                if not isinstance(first, Path):
                    raise expression_error(
                        self.kind,
                        f"Operator or function requires a document path; operator or function: {name}",
                    )
                return IfNotExists(first, second)
            return ListAppend(first, second)
        if token.kind in ("name", "hash"):
            return self.path()
        raise self.error(token)

    def _as_set_operand(self, arg: Operand | SetValue, name: str) -> SetOperand:
        if isinstance(arg, Size | Arithmetic):
            raise expression_error(
                self.kind, f"The function is not allowed to be used this way in an expression; function: {name}"
            )
        return arg

    def projection(self) -> tuple[Path, ...]:
        paths = [self.path()]
        while self.peek().kind == "op" and self.peek().text == ",":
            self.take()
            paths.append(self.path())
        return tuple(paths)


def _check_not_empty(text: str, kind: str) -> None:
    if not text.strip():
        raise expression_error(kind, "The expression can not be empty;")


@lru_cache(maxsize=4096)
def parse_condition(text: str, kind: str = "ConditionExpression") -> Condition:
    """Parse a condition, filter or key condition expression."""
    _check_not_empty(text, kind)
    parser = Parser(text, kind)
    try:
        tree = parser.condition()
    except RecursionError:  # a last line of defence: bad input never crashes the server
        raise expression_error(kind, "The expression is nested too deeply") from None
    parser.finish()
    return tree


@lru_cache(maxsize=4096)
def parse_update(text: str) -> Update:
    """Parse an update expression."""
    kind = "UpdateExpression"
    _check_not_empty(text, kind)
    parser = Parser(text, kind)
    tree = parser.update()
    parser.finish()
    return tree


@lru_cache(maxsize=4096)
def parse_projection(text: str) -> tuple[Path, ...]:
    """Parse a projection expression into its paths."""
    kind = "ProjectionExpression"
    _check_not_empty(text, kind)
    parser = Parser(text, kind)
    paths = parser.projection()
    parser.finish()
    return paths
