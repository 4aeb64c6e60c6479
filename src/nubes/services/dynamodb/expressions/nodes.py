"""The syntax tree of DynamoDB expressions.

Trees are immutable and keep placeholders (``#name``, ``:value``) unresolved, so
one parse of an expression text serves every request that sends it; the names
and values of a request are bound at evaluation time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

PathElement = str | int


@dataclass(frozen=True, slots=True)
class Path:
    """A document path: a top-level name, then map keys (str) and list indexes
    (int). A str element starting with ``#`` is a name placeholder unless the
    path is ``literal`` (built from legacy parameters)."""

    elements: tuple[PathElement, ...]
    literal: bool = False


@dataclass(frozen=True, slots=True)
class Value:
    """An ``:placeholder`` from ExpressionAttributeValues."""

    name: str


@dataclass(frozen=True, slots=True)
class Literal:
    """A value given directly (legacy parameters, PartiQL)."""

    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Size:
    """``size(operand)``: of a document path, or of a value of the request."""

    operand: Path | Value


Operand = Path | Value | Literal | Size


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right`` with op one of = <> < <= > >=."""

    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class Between:
    operand: Operand
    low: Operand
    high: Operand


@dataclass(frozen=True, slots=True)
class In:
    operand: Operand
    options: tuple[Operand, ...]


@dataclass(frozen=True, slots=True)
class Function:
    """A boolean function: attribute_exists, attribute_not_exists,
    attribute_type, begins_with, contains."""

    name: str
    args: tuple[Operand, ...]


@dataclass(frozen=True, slots=True)
class And:
    left: Condition
    right: Condition


@dataclass(frozen=True, slots=True)
class Or:
    left: Condition
    right: Condition


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition


Condition = Compare | Between | In | Function | And | Or | Not


# -- update expressions --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arithmetic:
    """``a + b`` or ``a - b`` in a SET action."""

    op: str
    left: SetOperand
    right: SetOperand


@dataclass(frozen=True, slots=True)
class IfNotExists:
    path: Path
    default: SetOperand


@dataclass(frozen=True, slots=True)
class ListAppend:
    first: SetOperand
    second: SetOperand


SetOperand = Path | Value | Literal | IfNotExists | ListAppend
SetValue = SetOperand | Arithmetic


@dataclass(frozen=True, slots=True)
class SetAction:
    path: Path
    value: SetValue


@dataclass(frozen=True, slots=True)
class RemoveAction:
    path: Path


@dataclass(frozen=True, slots=True)
class AddAction:
    path: Path
    value: Value | Literal


@dataclass(frozen=True, slots=True)
class DeleteAction:
    path: Path
    value: Value | Literal


@dataclass(frozen=True, slots=True)
class Update:
    """All actions of an update expression, by clause."""

    set: tuple[SetAction, ...] = ()
    remove: tuple[RemoveAction, ...] = ()
    add: tuple[AddAction, ...] = ()
    delete: tuple[DeleteAction, ...] = ()
    #: from AttributeUpdates (type mismatches are worded differently)
    legacy: bool = False

    def action_paths(self) -> list[Path]:
        """The target path of every action, in clause order."""
        actions: list[Any] = [*self.set, *self.remove, *self.add, *self.delete]
        return [action.path for action in actions]


def walk(node: Any) -> Iterator[Any]:
    """Every node in a tree (depth first, the node itself first)."""
    yield node
    if isinstance(node, tuple):
        for child in node:
            yield from walk(child)
        return
    if not hasattr(node, "__dataclass_fields__") or isinstance(node, Literal):
        return
    for field in fields(node):
        child = getattr(node, field.name)
        if isinstance(child, tuple) and field.name == "elements":
            continue
        if hasattr(child, "__dataclass_fields__") or isinstance(child, tuple):
            yield from walk(child)
