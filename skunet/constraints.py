"""Parameter constraints in scikit-learn's style (``_parameter_constraints``): each
parameter maps to what it may be, and :func:`check_params` names the first one that fits
none, with the closest option for a misspelt string."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["Interval", "Options", "check_params"]


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` (int or float) between ``low`` and ``high`` (None: unbounded);
    ``closed`` says which ends belong to it: "both", "left", "right" or "neither".

    >>> Interval(int, 1).describe(), Interval(float, 0, 1, "left").describe()
    ('an integer >= 1', 'a number in [0, 1)')
    """

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def accepts(self, value: Any) -> bool:
        base = Integral if self.kind is int else Real
        if isinstance(value, bool) or not isinstance(value, base):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            return False
        return self.high is None or value < self.high or (value == self.high and right)

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            left = "[" if self.closed in ("both", "left") else "("
            right = "]" if self.closed in ("both", "right") else ")"
            return f"{noun} in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"{noun} {'>=' if self.closed in ('both', 'left') else '>'} {self.low}"
        if self.high is not None:
            return f"{noun} {'<=' if self.closed in ('both', 'right') else '<'} {self.high}"
        return noun


@dataclass(frozen=True)
class Options:
    """One of a set of strings (a registry's keys when given the registry).

    >>> Options(("mask", "boundary")).describe()
    "one of 'mask', 'boundary'"
    """

    values: Collection[str]

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


def _accepts(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if constraint == "boolean":
        return isinstance(value, (bool, np.bool_))
    if constraint is callable:
        return callable(value)
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    return constraint.accepts(value)


def _describe_constraint(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if constraint == "boolean":
        return "True or False"
    if constraint is callable:
        return "a callable"
    if isinstance(constraint, type):
        return f"a {constraint.__name__}"
    return constraint.describe()


def check_params(
    params: dict[str, Any],
    constraints: dict[str, list[Any]],
    owner: str | None = None,
    route: str = "",
) -> None:
    """Check parameter values against a table of constraints, in the style of
    scikit-learn's ``_parameter_constraints``: each name maps to the list of what it may
    be (an :class:`Interval`, :class:`Options`, a type, ``"boolean"``, ``callable`` or
    ``None``). Names missing from ``params`` are skipped.

    Raises
    ------
    ValueError, TypeError
        For the first parameter that fits none of its constraints (ValueError when its
        type is right but its value is not); the message names the parameter (after
        ``owner``, e.g. a callback's class, and with its ``route``, e.g.
        ``callbacks__time_limit__``, when given), what it
        may be, the value given and, for a misspelled option, the closest one.

    Examples
    --------
    >>> check_params({"blend": "gausian"}, {"blend": [Options(("gaussian", "linear"))]})
    Traceback (most recent call last):
    ...
    ValueError: blend must be one of 'gaussian', 'linear', got 'gausian' (did you mean 'gaussian'?)
    """
    for name, allowed in constraints.items():
        if name not in params:
            continue
        value = params[name]
        if any(_accepts(c, value) for c in allowed):
            continue
        described = [_describe_constraint(c) for c in allowed]
        text = described[0] if len(described) == 1 else ", ".join(described[:-1])
        if len(described) > 1:
            text += f" or {described[-1]}"
        message = f"{owner + ': ' if owner else ''}{name} must be {text}, got {value!r}"
        options = [v for c in allowed if isinstance(c, Options) for v in c.values]
        if isinstance(value, str) and options:
            close = difflib.get_close_matches(value, options, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
        numbers = any(isinstance(c, Interval) for c in allowed)
        right_type = (isinstance(value, str) and bool(options)) or (
            numbers and isinstance(value, Real) and not isinstance(value, bool)
        )
        if route:
            message += f" ({route}{name})"
        raise (ValueError if right_type else TypeError)(message)
