"""Safe parsing of torchunlearn's option strings: ``"SGD(lr=0.01, momentum=0.9)"``, ``"Cosine"``.

torchunlearn ran ``eval`` on these strings, so a configuration file could execute any code. Here a
string is parsed with :mod:`ast` and accepted only if it is a bare allowed name or a call of an
allowed name whose arguments are literals (numbers, strings, booleans, None, and tuples, lists or
dicts of those, e.g. ``betas=(0.9, 0.999)`` or ``milestones=[2, 4]``). Nothing is evaluated.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any, NamedTuple

__all__ = ["OptionCall", "parse_option"]


class OptionCall(NamedTuple):
    """A parsed option: ``name(*args, **kwargs)`` with literal arguments."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def _literal(node: ast.expr, text: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError as err:
        raise ValueError(
            f"option {text!r}: argument {ast.unparse(node)!r} is not a literal; only numbers, strings, "
            "booleans, None and tuples/lists/dicts of them are allowed"
        ) from err


def parse_option(text: str, allowed: Iterable[str], *, what: str = "option") -> OptionCall:
    """Parse ``"Name"`` or ``"Name(arg, key=value, ...)"`` with ``Name`` in ``allowed``.

    Raises ``ValueError`` naming the problem for anything else: unknown names, attribute access,
    nested calls, comprehensions, operators or any other code.
    """
    allowed = sorted(allowed)
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string such as {allowed[0]}(...), got {type(text).__name__}")
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"{what} {text!r} is not of the form Name(key=value, ...): {err.msg}") from err
    if isinstance(node, ast.Name):
        name, args, kwargs = node.id, (), {}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise ValueError(f"{what} {text!r}: *args and **kwargs are not allowed")
        args = tuple(_literal(a, text) for a in node.args)
        kwargs = {k.arg: _literal(k.value, text) for k in node.keywords}
    else:
        raise ValueError(
            f"{what} {text!r} is not allowed: write a bare name or a call Name(key=value, ...) "
            f"with Name one of {allowed}"
        )
    if name not in allowed:
        raise ValueError(f"unknown {what} {name!r} in {text!r}; allowed: {allowed}")
    return OptionCall(name, args, kwargs)
