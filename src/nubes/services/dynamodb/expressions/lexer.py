"""Tokens of DynamoDB expressions, and the syntax error DynamoDB reports."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nubes.aws.errors import AwsError

#: ``name``: identifier; ``#``: name placeholder; ``:``: value placeholder;
#: ``int``: list index digits; ``op``: punctuation; ``eof``: end of input
_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z][A-Za-z0-9_]*)|(?P<hash>#[A-Za-z0-9_]+)|(?P<colon>:[A-Za-z0-9_]+)"
    r"|(?P<int>[0-9]+)|(?P<op><>|<=|>=|[=<>()\[\],.+\-]))"
)


@dataclass(frozen=True, slots=True)
class Token:
    """One token with its kind and its span in the expression text."""

    kind: str
    text: str
    start: int
    end: int

    def upper(self) -> str:
        """The token text upper-cased (keywords are case-insensitive)."""
        return self.text.upper()


def expression_error(kind: str, message: str) -> AwsError:
    """``Invalid <kind>: <message>`` as a ValidationException."""
    return AwsError("ValidationException", f"Invalid {kind}: {message}", 400)


def tokenize(text: str, kind: str) -> list[Token]:
    """Split ``text`` into tokens; an unknown character is a syntax error quoting it."""
    tokens: list[Token] = []
    pos = 0
    length = len(text)
    while True:
        while pos < length and text[pos].isspace():
            pos += 1
        if pos >= length:
            tokens.append(Token("eof", "<EOF>", length, length))
            return tokens
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            bad = Token("bad", text[pos], pos, pos + 1)
            raise syntax_error(kind, text, tokens, bad)
        group = match.lastgroup
        tokens.append(Token(group, match.group(group), match.start(group), match.end()))
        pos = match.end()


def syntax_error(kind: str, text: str, before: list[Token], token: Token) -> AwsError:
    """DynamoDB's ``Syntax error; token: "x", near: "..."``: ``near`` spans the
    token before the bad one through the token after it."""
    start = before[-1].start if before else token.start
    following = _TOKEN.match(text, token.end)
    end = following.end() if following and following.lastgroup and token.kind != "eof" else token.end
    near = text[start:end].strip()
    return expression_error(kind, f'Syntax error; token: "{token.text}", near: "{near}"')
