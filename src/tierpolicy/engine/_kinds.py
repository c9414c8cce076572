"""The registry of document kinds: each kind's spec model and compiler.

Context and Tiers are compiled by the loader itself; every other kind registers a
compiler that turns its validated documents into an immutable model, stored on the
policy set under the kind's name (:meth:`PolicySet.model`). Adding a kind means adding
its model and compiler here, and nothing else changes shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ._classification import ErrorsSpec, compile_errors
from ._documents import ContextSpec, SpecModel, TiersSpec
from ._ratelimits import RateLimitsSpec, compile_ratelimits
from ._resilience import ResilienceSpec, compile_resilience

if TYPE_CHECKING:
    from ._compiling import CompileContext, ParsedDocument


class KindCompiler(Protocol):
    """Compiles every document of one kind into that kind's model.

    Problems go to ``context.out`` as positioned diagnostics; the return value is only
    used when no error was reported anywhere in the set.
    """

    def __call__(self, context: CompileContext, documents: list[ParsedDocument], /) -> object: ...


SPEC_MODELS: dict[str, type[SpecModel]] = {
    "Context": ContextSpec,
    "Tiers": TiersSpec,
    "Errors": ErrorsSpec,
    "Resilience": ResilienceSpec,
    "RateLimits": RateLimitsSpec,
}
"""Document kind -> the model of its ``spec``."""

SINGLETON_KINDS = frozenset({"Tiers", "Errors"})
"""Kinds of which a policy set holds at most one document."""

KIND_COMPILERS: dict[str, KindCompiler] = {
    "Errors": compile_errors,
    "Resilience": compile_resilience,
    "RateLimits": compile_ratelimits,
}
"""Kinds beyond Context and Tiers -> their compiler."""
