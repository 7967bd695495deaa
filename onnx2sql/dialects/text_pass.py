"""A text pass over finished SQL, for the backends that lack what the shared templates call.

SQLite has no CREATE FUNCTION and no arrays; Spark SQL has arrays indexed from 0 and names
quoted with backticks. Both get the functions the templates call by DuckDB's names (list_sum,
getvariable, ...) as macros expanded in place, and subscripts v[p] (1-based) rewritten, in one
left-to-right pass that copies string literals and comments as they are.
"""
from __future__ import annotations

from typing import Callable, Mapping

Macro = Callable[[list[str]], str]


class TextPass:
    """Expands `macros` (their arguments first), rewrites each subscript `target[index]` as
    `subscript(target, index)` (kept as it is when None) and each quoted name through `name`
    (kept as it is when None). A subscript applies to the primary just before it: a name, a quoted
    name or a parenthesised expression."""

    def __init__(self, macros: Mapping[str, Macro], subscript: Callable[[str, str], str] | None = None,
                 name: Callable[[str], str] | None = None, backslash_escapes: bool = False) -> None:
        self.macros = macros
        self.subscript = subscript
        self.name = name
        # Whether a backslash escapes the next character of a string literal (Spark's \').
        self.escapes = backslash_escapes

    def run(self, sql: str) -> str:
        return _Walk(self, sql).run()


class _Walk:
    """One pass of a TextPass over one text."""

    def __init__(self, rules: TextPass, sql: str) -> None:
        self.rules = rules
        self.sql = sql
        self.at = 0
        self.out: list[str] = []
        self.primary = -1  # index in out where the last complete primary starts
        self.opens: list[tuple[int, int]] = []  # for each open paren: its index, and its primary start

    def run(self) -> str:
        sql, n = self.sql, len(self.sql)
        while self.at < n:
            ch = sql[self.at]
            if ch in "'\"":
                end = quoted_end(sql, self.at, self.rules.escapes)
                text = sql[self.at:end]
                if ch == '"' and self.rules.name is not None:
                    text = self.rules.name(text[1:-1].replace('""', '"'))
                self._emit(text, primary=ch == '"')
                self.at = end
            elif sql.startswith("--", self.at):
                end = sql.find("\n", self.at)
                end = n if end < 0 else end
                self._emit(sql[self.at:end], primary=False, keep=True)
                self.at = end
            elif ch.isalpha() or ch == "_":
                self._name()
            elif ch == "(":
                start = self.primary if self._after_name() else len(self.out)
                self.opens.append((len(self.out), start))
                self._emit("(", primary=False)
                self.at += 1
            elif ch == ")":
                self._emit(")", primary=False)
                self.primary = self.opens.pop()[1] if self.opens else -1
                self.at += 1
            elif ch == "[" and self.rules.subscript is not None:
                self._subscript()
            else:
                self._emit(ch, primary=False, keep=ch.isspace() or ch == ".")
                self.at += 1
        return "".join(self.out)

    def _again(self, text: str) -> str:
        return _Walk(self.rules, text).run()

    def _name(self) -> None:
        sql, start = self.sql, self.at
        end = start
        while end < len(sql) and (sql[end].isalnum() or sql[end] in "_$"):
            end += 1
        name = sql[start:end]
        after = end
        while after < len(sql) and sql[after] == " ":
            after += 1
        macro = self.rules.macros.get(name.lower())
        if macro is not None and after < len(sql) and sql[after] == "(":
            close = matching(sql, after, "(", ")", self.rules.escapes)
            args = [self._again(a) for a in split_arguments(sql[after + 1:close], self.rules.escapes)]
            self._emit(macro(args), primary=True)
            self.at = close + 1
            return
        self._emit(name, primary=True)
        self.at = end

    def _subscript(self) -> None:
        close = matching(self.sql, self.at, "[", "]", self.rules.escapes)
        index = self._again(self.sql[self.at + 1:close])
        start = self.primary if self.primary >= 0 else len(self.out)
        target = "".join(self.out[start:])
        del self.out[start:]
        self._emit(self.rules.subscript(target, index), primary=True)  # type: ignore[misc]
        self.at = close + 1

    def _after_name(self) -> bool:
        """Whether the last token is a function's name (a call's primary starts at the name)."""
        last = self.out[-1] if self.out else ""
        return (last[:1].isalpha() or last[:1] == "_") and last.upper() not in _KEYWORDS

    def _emit(self, text: str, primary: bool, keep: bool = False) -> None:
        """Append `text`; a primary starts there (unless it continues a dotted name), and any other
        token but whitespace and dots ends the last primary."""
        if primary:
            chained = bool(self.out) and self.out[-1] == "." and self.primary >= 0
            if not chained:
                self.primary = len(self.out)
        elif not keep:
            self.primary = -1
        self.out.append(text)


_KEYWORDS = {"AND", "OR", "NOT", "IN", "AS", "EXISTS", "VALUES", "SELECT", "FROM", "WHERE", "ON", "THEN",
             "ELSE", "WHEN", "CASE", "BY", "JOIN", "IS", "LIKE", "USING", "OVER", "FILTER"}


def quoted_end(sql: str, at: int, escapes: bool = False) -> int:
    """The index after the quoted text starting at `at` (doubled quotes stay inside, and with
    `escapes` a string literal's backslash-escaped characters)."""
    quote = sql[at]
    k = at + 1
    while True:
        if escapes and quote == "'":
            while k < len(sql) and sql[k] != quote:
                k += 2 if sql[k] == "\\" else 1
        else:
            k = sql.find(quote, k)
        if k < 0 or k >= len(sql):
            raise ValueError(f"unterminated {quote} in SQL")
        if sql.startswith(quote * 2, k):
            k += 2
            continue
        return k + 1


def matching(sql: str, at: int, open_: str, close: str, escapes: bool = False) -> int:
    """The index of the bracket closing the one at `at`, skipping quoted text and comments."""
    depth = 0
    k = at
    while k < len(sql):
        ch = sql[k]
        if ch in "'\"":
            k = quoted_end(sql, k, escapes)
            continue
        if sql.startswith("--", k):
            end = sql.find("\n", k)
            k = len(sql) if end < 0 else end
            continue
        if ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return k
        k += 1
    raise ValueError(f"unbalanced {open_} in SQL")


def split_arguments(text: str, escapes: bool = False) -> list[str]:
    """Top-level comma-separated arguments of a call."""
    args, depth, start, k = [], 0, 0, 0
    while k < len(text):
        ch = text[k]
        if ch in "'\"":
            k = quoted_end(text, k, escapes)
            continue
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:k].strip())
            start = k + 1
        k += 1
    last = text[start:].strip()
    if last or args:
        args.append(last)
    return args
