"""Compiled programs and their top-level clauses."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeAlias

from tierpolicy.engine._exceptions import ConditionError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._types import CelType

# Context values are dynamically typed; closures check kinds at run time.
Activation: TypeAlias = "Mapping[str, Any]"
Evaluator: TypeAlias = "Callable[[Mapping[str, Any]], object]"


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Clause:
    """One operand of the top-level ``&&`` of a condition, compiled on its own.

    Clauses let the engine explain which part of a condition failed. Clauses of the
    shape ``<attribute path> <op> <constant>`` (either way round, normalised so the
    attribute is on the left) also expose their parts, so a message can say
    ``metrics.orders_60d is 42, needs >= 50``. A bare boolean attribute ``a.b`` is
    described as ``a.b == true`` and ``!a.b`` as ``a.b == false``.

    Attributes:
        source: The clause's exact text inside the whole expression.
        offset: Where ``source`` starts inside the whole expression.
        program: The clause compiled on its own.
        attribute: The dotted attribute path, for comparison clauses; else ``None``.
        operator: ``==``, ``!=``, ``<``, ``<=``, ``>`` or ``>=``; else ``None``.
        value: The constant's run-time value, for comparison clauses; else ``None``.
    """

    source: str
    offset: int
    program: Program
    attribute: str | None = None
    operator: str | None = None
    value: object | None = None


@dataclasses.dataclass(frozen=True, slots=True, eq=False, repr=False)
class Program:
    """A checked, compiled CEL expression; immutable and safe to share between threads.

    Build one with :func:`~tierpolicy.engine.cel.compile_expression`.

    Attributes:
        source: The expression text.
        result_type: The type the checker inferred (``dyn`` when only known at run time).
        references: Every context attribute path the expression reads, dotted
            (``"metrics.rating"``); paths inside ``has()`` count.
        clauses: The operands of the top-level ``&&``, or one clause for the whole
            expression when there is none.
        reads_now: Whether the expression reads the evaluation time ``now`` (so the
            engine adds it to the context only then; worked out once, here).
    """

    source: str
    result_type: CelType
    references: frozenset[str]
    clauses: tuple[Clause, ...]
    _evaluator: Evaluator
    reads_now: bool = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        reads = any(r == "now" or r.startswith("now.") for r in self.references)
        object.__setattr__(self, "reads_now", reads)

    def evaluate(self, activation: Mapping[str, object]) -> object:
        """Evaluate against a context.

        Args:
            activation: Root variable name to value; objects are plain mappings.

        Returns:
            The result as a plain Python value (see the package documentation).

        Raises:
            ConditionError: The expression failed for this context, for example an
                attribute is missing, a value has the wrong type, arithmetic overflowed
                or a division by zero. The message is meant for people.
        """
        try:
            return self._evaluator(activation)
        except ConditionError:
            raise
        except RecursionError:
            raise ConditionError("the context is nested too deeply to evaluate") from None
        except Exception as exc:
            # A context value misbehaved (a Mapping whose lookups raise, say); the
            # contract is that every run-time failure is a ConditionError.
            raise ConditionError(f"evaluation failed: {type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Program({self.source!r}, result_type={self.result_type})"
