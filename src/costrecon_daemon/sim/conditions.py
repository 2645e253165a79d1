"""The ConnectWise ``conditions`` grammar (psa-apis.md §1.2), compiled to a Python predicate.

    expr    := term (("or") term)*
    term    := factor (("and") factor)*
    factor  := "not" factor | "(" expr ")" | compare
    compare := path op value | path ["not"] "in" "(" value ("," value)* ")"
               | path ["not"] ("like" | "contains") string
    op      := = | != | < | <= | > | >=
    path    := name ("/" name)*            e.g. product/id, _info/lastUpdated
    value   := "double-quoted" | number | true | false | null | [2024-05-01T00:00:00Z]

Keywords are case-insensitive; string comparisons are too (SQL Server's default collation, which
is what ConnectWise runs on). ``lastUpdated`` and ``_info/lastUpdated`` are the same field
(§1.2: which form the catalogue accepts is UNCERTAIN, so the sim accepts both).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["ConditionError", "compile_conditions", "parse_cw_datetime"]

Getter = Callable[[Any, str], Any]  # (record, path) -> value
Predicate = Callable[[Any], bool]


class ConditionError(ValueError):
    pass


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<date>\[[^\]]*\])
      | (?P<op><=|>=|!=|=|<|>)
      | (?P<lp>\() | (?P<rp>\)) | (?P<comma>,)
      | (?P<num>-?\d+(?:\.\d+)?)(?![\w/])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)


def parse_cw_datetime(text: str) -> int:
    """``2024-05-01T00:00:00Z`` (or naive, or with fractions / offset) -> epoch seconds (UTC)."""
    text = text.strip()
    try:
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ConditionError(f"{text!r} is not a valid date") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConditionError(
                f"unexpected character at position {pos}: {text[pos : pos + 10]!r}"
            )
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Date:
    __slots__ = ("epoch",)

    def __init__(self, epoch: int):
        self.epoch = epoch


def _norm(value: Any) -> Any:
    """Bring a record value and a literal onto comparable ground."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, str):
        return value.casefold()
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if isinstance(right, _Date):
        if left is None:
            return False
        if not isinstance(left, int):
            try:
                left = parse_cw_datetime(str(left))
            except ConditionError:
                return False
        right = right.epoch
    else:
        left, right = _norm(left), _norm(right)
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if left is None or right is None:
        return False
    try:
        if op == "<":
            return left < right
        if op == "<=":
            return left <= right
        if op == ">":
            return left > right
        return left >= right
    except TypeError:
        return False


def _like(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in pattern.split("%")]
    return re.compile("^" + ".*".join(parts) + "$", re.IGNORECASE | re.DOTALL)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], getter: Getter, fields: set[str] | None):
        self.tokens = tokens
        self.i = 0
        self.getter = getter
        self.fields = fields

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ConditionError("unexpected end of conditions")
        self.i += 1
        return tok

    def keyword(self, *words: str) -> str | None:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].lower() in words:
            self.i += 1
            return tok[1].lower()
        return None

    def expr(self) -> Predicate:
        left = self.term()
        while self.keyword("or"):
            right = self.term()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def term(self) -> Predicate:
        left = self.factor()
        while self.keyword("and"):
            right = self.factor()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def factor(self) -> Predicate:
        if self.keyword("not"):
            inner = self.factor()
            return lambda r: not inner(r)
        tok = self.peek()
        if tok and tok[0] == "lp":
            self.i += 1
            inner = self.expr()
            if self.next()[0] != "rp":
                raise ConditionError("missing closing parenthesis")
            return inner
        return self.compare()

    def value(self) -> Any:
        kind, text = self.next()
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            try:
                return Decimal(text)
            except InvalidOperation:
                raise ConditionError(f"{text!r} is not a number") from None
        if kind == "date":
            return _Date(parse_cw_datetime(text[1:-1]))
        if kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind == "word" and text.lower() == "null":
            return None
        raise ConditionError(f"expected a value, found {text!r}")

    def compare(self) -> Predicate:
        kind, path = self.next()
        if kind != "word" or path.lower() in ("and", "or", "not", "in", "like", "contains"):
            raise ConditionError(f"expected a field name, found {path!r}")
        if path == "lastUpdated":
            path = "_info/lastUpdated"
        if self.fields is not None and path.split("/", 1)[0] not in self.fields:
            raise ConditionError(f"unknown field {path!r}")
        get = self.getter
        negate = bool(self.keyword("not"))
        word = self.keyword("in", "like", "contains")
        if word == "in":
            if self.next()[0] != "lp":
                raise ConditionError("expected '(' after in")
            values = [self.value()]
            while (tok := self.next())[0] == "comma":
                values.append(self.value())
            if tok[0] != "rp":
                raise ConditionError("expected ')' to close in (...)")
            normed = {_norm(v) for v in values if not isinstance(v, _Date)}
            return lambda r: (_norm(get(r, path)) in normed) != negate
        if word in ("like", "contains"):
            needle = self.value()
            if not isinstance(needle, str):
                raise ConditionError(f"{word} needs a quoted string")
            rx = _like(needle if word == "like" else f"%{needle}%")
            return lambda r: ((v := get(r, path)) is not None and bool(rx.match(str(v)))) != negate
        if negate:
            raise ConditionError("expected in, like or contains after not")
        kind, op = self.next()
        if kind != "op":
            raise ConditionError(f"expected an operator after {path!r}, found {op!r}")
        literal = self.value()
        return lambda r: _compare(op, get(r, path), literal)


def compile_conditions(text: str, getter: Getter, fields: set[str] | None = None) -> Predicate:
    """Compile ``text``; ``getter(record, "a/b")`` reads a value; ``fields`` (top-level names)
    makes an unknown field an error, as ConnectWise does."""
    tokens = _tokenize(text)
    if not tokens:
        return lambda r: True
    parser = _Parser(tokens, getter, fields)
    pred = parser.expr()
    if parser.peek() is not None:
        raise ConditionError(f"unexpected {parser.peek()[1]!r} after a complete condition")  # type: ignore[index]
    return pred
