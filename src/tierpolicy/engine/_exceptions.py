"""The one exception tree of tierpolicy.

Every error the library raises on purpose derives from :class:`TierpolicyError`, so
callers can catch everything of ours with one ``except`` and let everything else
through. Driver errors (Redis, SQL, HTTP) are translated at the adapter boundary with
``raise ... from exc`` so the original stays on ``__cause__``.

::

    TierpolicyError
    ├── PolicyError                     the policy set itself is wrong
    │   ├── PolicyLoadError             loading found diagnostics (carries them all)
    │   └── ExpressionError             a CEL condition does not parse or type-check
    │       ├── ExpressionSyntaxError
    │       └── ExpressionTypeError
    ├── EvaluationError                 a question could not be answered
    │   ├── UnknownNameError            (also LookupError) a name the policy set lacks
    │   │   ├── UnknownFeatureError
    │   │   ├── UnknownLimitError
    │   │   └── UnknownTierError
    │   ├── InvalidContextError         (also ValueError) the context is malformed
    │   ├── InvalidRequestError         (also ValueError) an eval request is malformed
    │   └── NoErrorsPolicyError         (also LookupError) classify asked of a set
    │                                   without an Errors document
    ├── ConditionError                  a condition failed at run time (missing
    │                                   attribute, type mismatch); decisions absorb it
    │                                   as a deny with reason CONDITION_ERROR
    ├── ResilienceError                 a resilient call failed for good (carries the
    │                                   Classification); raised from the last error
    ├── CallRejectedError               the executor refused to call the function
    │   ├── CircuitOpenError            the operation's breaker is open
    │   ├── BulkheadFullError           no concurrency slot freed in time
    │   └── FallbackCycleError          an operation fallback would loop
    ├── AttemptTimeoutError             (also TimeoutError) an attempt ran past its timeout
    ├── StoreError                      a store (Redis, SQL) failed; the driver's
    │   │                               error stays on ``__cause__``
    │   └── StoreUnavailableError       (also ConnectionError) unreachable, timed out
    │                                   or refusing writes; rate limits apply their
    │                                   declared ``on_store_error`` mode
    └── ServiceProblemError             the seller service answered with a problem
        │                               (raised by ``tierpolicy.client``)
        ├── AuthenticationFailedError   401: no, a bad or an expired token
        ├── PermissionDeniedError       403: the token's role may not do this
        ├── ProblemNotFoundError        (also LookupError) 404
        ├── RateLimitedError            429; ``retry_after`` from the header
        └── ServiceUnavailableError     (also ConnectionError) unreachable, 502-504
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._classification import Classification
    from ._diagnostics import Diagnostic


class TierpolicyError(Exception):
    """Root of every exception tierpolicy raises on purpose."""


class PolicyError(TierpolicyError):
    """The policy set is invalid."""


class PolicyLoadError(PolicyError):
    """Loading a policy set produced one or more error diagnostics.

    Nothing is half-loaded: when this is raised, no policy set exists.

    Attributes:
        diagnostics: Every diagnostic found, errors and warnings, in file order.
    """

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        first = errors[0].format() if errors else "no diagnostics"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"policy set failed to load: {first}{more}")


class ExpressionError(PolicyError):
    """A CEL expression is invalid.

    Attributes:
        source: The expression text.
        offset: Zero-based character offset of the problem inside ``source``.
        length: How many characters the problem spans (at least 1).
        hint: An optional suggestion such as a "did you mean".
        reason: A machine-readable cause: ``syntax``, ``unsupported``, ``type``,
            ``unknown_attribute``, ``regex``, ``type_name`` or ``value`` (a constant
            argument that can never be converted, such as ``duration("90d")``).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        offset: int,
        length: int = 1,
        hint: str | None = None,
        reason: str = "syntax",
    ) -> None:
        self.message = message
        self.reason = reason
        self.source = source
        self.offset = max(0, min(offset, len(source)))
        self.length = max(1, length)
        self.hint = hint
        super().__init__(message if hint is None else f"{message}; {hint}")


class ExpressionSyntaxError(ExpressionError):
    """A CEL expression does not parse, or uses syntax outside the supported subset."""


class ExpressionTypeError(ExpressionError):
    """A CEL expression parses but does not type-check against the context schema."""


class EvaluationError(TierpolicyError):
    """A question to the engine could not be answered."""


class UnknownNameError(EvaluationError, LookupError):
    """A feature, limit or tier name that the policy set does not define.

    Attributes:
        name: The name asked for.
        suggestions: Close names that do exist, best first.
    """

    kind = "name"

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        hint = f"; did you mean {self.suggestions[0]!r}?" if self.suggestions else ""
        super().__init__(f"unknown {self.kind} {name!r}{hint}")

    def __str__(self) -> str:
        # LookupError would otherwise repr() the message, quoting it twice.
        return str(self.args[0])


class UnknownFeatureError(UnknownNameError):
    """The policy set defines no feature of that name."""

    kind = "feature"


class UnknownLimitError(UnknownNameError):
    """The policy set defines no limit of that name."""

    kind = "limit"


class UnknownTierError(UnknownNameError):
    """The policy set defines no tier of that name."""

    kind = "tier"


class InvalidContextError(EvaluationError, ValueError):
    """The evaluation context lacks something the engine needs, or has the wrong shape."""


class InvalidRequestError(EvaluationError, ValueError):
    """An evaluation request (JSON) is malformed.

    Attributes:
        location: Where in the request the problem is, as a JSON-pointer-like path.
    """

    def __init__(self, message: str, *, location: str = "") -> None:
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class NoErrorsPolicyError(EvaluationError, LookupError):
    """The policy set has no ``Errors`` document, so errors cannot be classified."""

    def __init__(self) -> None:
        super().__init__("this policy set has no Errors document: add one to classify errors")

    def __str__(self) -> str:
        # LookupError would otherwise repr() the message, quoting it twice.
        return str(self.args[0])


class ConditionError(TierpolicyError):
    """A condition could not be evaluated for this context.

    Raised by compiled CEL programs; the engine turns it into a deny whose reason is
    ``CONDITION_ERROR`` and whose message is this exception's text.
    """


class ResilienceError(TierpolicyError):
    """A resilient call failed for good: retries and fallbacks could not save it.

    Raised ``from`` the last error, which stays on ``__cause__``.

    Attributes:
        operation: The operation that failed.
        classification: What the last error is, by the errors policy.
        attempts: How many attempts were made.
        reason: Why no further attempt was made (a :class:`RetryReason` value, or
            ``CIRCUIT_OPEN``).
    """

    def __init__(self, operation: str, classification: Classification, *, attempts: int, reason: str) -> None:
        self.operation = operation
        self.classification = classification
        self.attempts = attempts
        self.reason = reason
        super().__init__(
            f"{operation} failed with {classification.code} after {attempts} attempt(s) ({reason})"
        )


class CallRejectedError(TierpolicyError):
    """The executor refused to make a call (it never reached the function).

    Attributes:
        operation: The operation whose call was refused.
    """

    def __init__(self, operation: str, message: str) -> None:
        self.operation = operation
        super().__init__(message)


class CircuitOpenError(CallRejectedError):
    """The operation's circuit breaker is open (or its half-open probes are all taken).

    Classified as the registry's ``CIRCUIT_OPEN`` code (never retried) when the errors
    policy declares one; raised as is otherwise.

    Attributes:
        retry_in: Seconds until the breaker admits calls again, when known.
    """

    # AIP-193 identity, so the errors policy classifies it like any other error.
    reason = "CIRCUIT_OPEN"
    domain = "tierpolicy"

    def __init__(self, operation: str, *, retry_in: float | None = None) -> None:
        self.retry_in = retry_in
        hint = f"; retry in {retry_in:g}s" if retry_in is not None else ""
        super().__init__(operation, f"the circuit breaker of {operation} is open{hint}")


class BulkheadFullError(CallRejectedError):
    """The operation already runs its maximum of concurrent calls and no slot freed in time.

    Attributes:
        max_concurrent: The bulkhead's size.
        waited: Seconds waited for a slot.
    """

    reason = "BULKHEAD_FULL"
    domain = "tierpolicy"

    def __init__(self, operation: str, *, max_concurrent: int, waited: float) -> None:
        self.max_concurrent = max_concurrent
        self.waited = waited
        super().__init__(
            operation,
            f"{operation} already runs {max_concurrent} concurrent call(s); no slot freed in {waited:g}s",
        )


class FallbackCycleError(CallRejectedError):
    """An ``operation`` fallback step would call an operation already on the call's chain."""


class AttemptTimeoutError(TierpolicyError, TimeoutError):
    """An attempt ran past its timeout (also a :class:`TimeoutError`, so rules on it match).

    Async attempts are cancelled at the timeout; sync attempts cannot be interrupted and
    are failed when they return late (their result is discarded).

    Attributes:
        operation: The operation.
        timeout: The attempt's timeout in seconds.
    """

    def __init__(self, operation: str, timeout: float) -> None:
        self.operation = operation
        self.timeout = timeout
        super().__init__(f"an attempt of {operation} exceeded its {timeout:g}s timeout")


class StoreError(TierpolicyError):
    """A store (Redis, a SQL database) answered with an error, or an answer the library cannot read.

    Adapters raise it ``from`` the driver's exception, which stays on ``__cause__``.

    Attributes:
        store: The store's address with any password removed (``redis://host:6379/0``).
    """

    def __init__(self, message: str, *, store: str = "") -> None:
        self.store = store
        super().__init__(f"{message} ({store})" if store else message)


class StoreUnavailableError(StoreError, ConnectionError):
    """The store cannot be reached right now: refused, reset, timed out, loading or read-only."""


class ServiceProblemError(TierpolicyError):
    """The seller service answered with an RFC 9457 problem (raised by ``tierpolicy.client``).

    Attributes:
        status: The HTTP status (0 when the service was not reached).
        code: The problem's error code (``SELLER_NOT_FOUND`` ...), or ``""``.
        problem: The problem's members as the service sent them.
        request_id: The service's request id, for support.
        retry_after: Seconds the service asked to wait (``Retry-After``), if it did.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        problem: dict[str, object] | None = None,
        request_id: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.problem = problem or {}
        self.request_id = request_id
        self.retry_after: float | None = None
        label = f"{status} {code}".strip() if status else code
        super().__init__(f"{label}: {message}" if label else message)


class AuthenticationFailedError(ServiceProblemError):
    """401: the request carried no token, or one the service refused."""


class PermissionDeniedError(ServiceProblemError):
    """403: the token's role may not do this."""


class ProblemNotFoundError(ServiceProblemError, LookupError):
    """404: no such seller, version or route (or a seller the token may not see)."""

    def __str__(self) -> str:
        # LookupError would otherwise repr() the message, quoting it.
        return str(self.args[0])


class RateLimitedError(ServiceProblemError):
    """429: a rate limit refused the request; ``retry_after`` says when to try again."""


class ServiceUnavailableError(ServiceProblemError, ConnectionError):
    """The service cannot be reached, or answered 502, 503 or 504."""
