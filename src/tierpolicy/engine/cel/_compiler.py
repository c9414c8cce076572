"""The closure compiler: a checked syntax tree to a tree of Python closures.

Every node becomes a function ``activation -> value``. Policy text is never passed to
``eval`` or ``exec``; the only code that runs is the code in this module.

Conditions run on the hot path of every decision, so the compiler specialises the
common shapes:

* an attribute path ``a.b.c`` is one closure doing the nested lookups inline;
* ``<path> <op> <constant>`` (and ``<constant> <op> <path>``) is one closure doing the
  lookups and the comparison, with an inline check of the value's type; anything
  unusual (a missing key, a value of another kind) falls back to the generic
  implementation, which produces CEL's answer or a precise error;
* ``<path> in [<constants>]`` tests membership in a precomputed frozenset;
* ``&&`` and ``||`` chains are one closure calling their operands in turn (unrolled up
  to four), re-running on a slow path with CEL's error absorption only when an
  operand fails or is not a bool;
* sub-expressions without variables are evaluated once at compile time (constant
  folding). Folding that fails leaves the expression alone, so the error still
  happens at run time, as CEL prescribes; with one exception: a conversion function
  (``duration``, ``timestamp``, ``int``, ...) whose argument is a constant that does
  not convert is an ``ExpressionTypeError`` with ``reason="value"``, because it would
  fail on every evaluation (``duration("90d")``: CEL has no day unit).

Macros iterate over a private copy of the activation (the iteration variable is bound
in it), and every evaluation has a budget of :data:`MAX_ITERATIONS` macro iterations, so
nested macros cannot make a short expression run for hours.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from tierpolicy.engine._exceptions import ConditionError, ExpressionTypeError

from . import _ast as ast
from . import _values as rt
from ._checker import check, path_root
from ._hints import conversion_hint
from ._parser import parse
from ._program import Clause, Program
from ._types import BOOL, DOUBLE, DYN, TIMESTAMP, UINT, CelType, PrimitiveType

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import TypeAlias

    from ._checker import CheckResult
    from ._program import Activation, Evaluator

    _Scope: TypeAlias = Callable[[Activation], tuple[Sequence[object], dict[str, object]]]

_INT64_MIN: Final = rt.INT64_MIN
_INT64_MAX: Final = rt.INT64_MAX
_NOT_CONSTANT: Final = object()
_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})
MAX_ITERATIONS: Final = 100_000
"""Most macro iterations (all, exists, map, ...) one evaluation may run, nested or not.

Nested macros multiply (``xs.all(a, xs.all(b, ...))``), so without a bound a short
expression could run for hours; past the bound evaluation fails with a ConditionError.
"""
# The budget travels in the activation under a key no CEL identifier can spell.
_BUDGET: Final = "\x00iterations"
_COMPARISONS: Final = frozenset({"==", "!=", "<", "<=", ">", ">="})
_SWAPPED: Final = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_OPERATORS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ARITHMETIC: Final[dict[str, Callable[[object, object], object]]] = {
    "+": rt.add,
    "-": rt.subtract,
    "*": rt.multiply,
    "/": rt.divide,
    "%": rt.modulo,
}
_UNARY_FUNCTIONS: Final[dict[str, Callable[[object], object]]] = {
    "int": rt.to_int,
    "uint": rt.to_uint,
    "double": rt.to_double,
    "string": rt.to_string,
    "bool": rt.to_bool,
    "bytes": rt.to_bytes,
    "timestamp": rt.to_timestamp,
    "duration": rt.to_duration,
    "size": rt.size,
}
_CONVERSIONS: Final = frozenset(_UNARY_FUNCTIONS) - {"size"}
_STRING_METHODS: Final[dict[str, Callable[[object, object], bool]]] = {
    "startsWith": rt.starts_with,
    "endsWith": rt.ends_with,
    "contains": rt.contains,
    "matches": rt.matches,
}


class _Never:
    """A type no value has: makes a fast-path ``type(v) is ...`` test always fail."""


def compile_expression(source: str, env: Mapping[str, CelType], *, expected: CelType = BOOL) -> Program:
    """Parse, type-check and compile a CEL expression.

    Args:
        source: The expression, for example ``seller.verified && metrics.rating >= 4.5``.
        env: Root variable name to type: the context schema.
        expected: The type the expression must have. ``DYN`` accepts any; an
            expression whose type is only known at run time (``dyn``) is accepted and
            its value checked when it runs.

    Returns:
        The compiled program.

    Raises:
        ExpressionSyntaxError: The text does not parse (``reason="syntax"``), uses CEL
            outside the supported subset (``"unsupported"``), or has an invalid literal
            regular expression (``"regex"``).
        ExpressionTypeError: The expression does not type-check against ``env``
            (``"type"``, or ``"unknown_attribute"`` for a misspelt attribute), or a
            conversion function's constant argument cannot be converted, as in
            ``duration("90d")`` (``"value"``).
    """
    root = parse(source)
    checked = check(source, root, env, expected)
    compiler = _Compiler(source, checked)
    compiler.compile(root)
    return _build_program(source, root, compiler, expected)


# --------------------------------------------------------------------------- programs


def _build_program(source: str, root: ast.Node, compiler: _Compiler, expected: CelType) -> Program:
    checked = compiler.checked
    main = Program(
        source=source,
        result_type=checked.types[id(root)],
        references=_references(root, checked),
        clauses=(),
        _evaluator=_evaluator(root, compiler, expected),
    )
    parts = root.children if isinstance(root, ast.And) else (root,)
    clauses: list[Clause] = []
    for part in parts:
        if part is root:
            program = main
        else:
            program = Program(
                source=source[part.start : part.end],
                result_type=checked.types[id(part)],
                references=_references(part, checked),
                clauses=(),
                _evaluator=_evaluator(part, compiler, BOOL),
            )
        attribute, op, value = _describe(part, compiler)
        clause = Clause(
            source=source[part.start : part.end],
            offset=part.start,
            program=program,
            attribute=attribute,
            operator=op,
            value=value,
        )
        if program is not main:
            # A clause's program is a one-clause expression whose clause is itself.
            object.__setattr__(program, "clauses", (dataclasses.replace(clause, offset=0),))
        clauses.append(clause)
    object.__setattr__(main, "clauses", tuple(clauses))
    return main


def _evaluator(node: ast.Node, compiler: _Compiler, expected: CelType) -> Evaluator:
    fn = compiler.codes[id(node)].fn
    if any(isinstance(n, ast.Comprehension) for n in _walk(node)):
        fn = _with_budget(fn)
    return _expect(fn, compiler.checked.types[id(node)], expected)


def _walk(node: ast.Node) -> Iterator[ast.Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(ast.children(current))


def _references(node: ast.Node, checked: CheckResult) -> frozenset[str]:
    return frozenset(
        path for current in _walk(node) if (path := checked.references.get(id(current))) is not None
    )


def _root_path(node: ast.Node, checked: CheckResult) -> str | None:
    path = ast.attribute_path(node)
    if path is None or id(path_root(node)) not in checked.roots:
        return None
    return ".".join(path)


def _describe(node: ast.Node, compiler: _Compiler) -> tuple[str | None, str | None, object]:
    """The (attribute, operator, value) explanation of a clause, when it has that shape."""
    checked = compiler.checked
    if isinstance(node, ast.Binary) and node.op in _COMPARISONS:
        left = compiler.codes[id(node.left)]
        right = compiler.codes[id(node.right)]
        path = _root_path(node.left, checked)
        if path is not None and right.constant is not _NOT_CONSTANT:
            return path, node.op, right.constant
        path = _root_path(node.right, checked)
        if path is not None and left.constant is not _NOT_CONSTANT:
            return path, _SWAPPED[node.op], left.constant
    operand, negated = node, False
    if isinstance(node, ast.Unary) and node.op == "!":
        operand, negated = node.operand, True
    path = _root_path(operand, checked)
    if path is not None and checked.types[id(operand)] == BOOL:
        return path, "==", not negated
    return None, None, None


def _with_budget(fn: Evaluator) -> Evaluator:
    """Give one evaluation a shared macro-iteration budget (see MAX_ITERATIONS)."""

    def budgeted(act: object) -> object:
        if not isinstance(act, Mapping):
            return fn(act)  # type: ignore[arg-type]  # the attribute readers report it
        scope = dict(act)
        scope[_BUDGET] = [MAX_ITERATIONS]
        return fn(scope)

    return budgeted


def _expect(fn: Evaluator, actual: CelType, expected: CelType) -> Evaluator:
    """Check at run time the kind of a ``dyn`` result against the expected type."""
    if actual != DYN or expected == DYN or not isinstance(expected, PrimitiveType):
        return fn
    name = expected.name

    def checked_result(act: Activation) -> object:
        value = fn(act)
        if rt.kind_of(value) != name:
            msg = f"the expression must produce {name}, but produced {rt.kind_of(value)}"
            raise ConditionError(msg)
        return value

    return checked_result


# --------------------------------------------------------------------------- compiler


@dataclasses.dataclass(slots=True)
class _Code:
    """A compiled node: its closure, free variables, and its value when constant."""

    fn: Evaluator
    free: frozenset[str]
    constant: object = _NOT_CONSTANT


def _freeze(value: object) -> object:
    """Make a folded constant immutable: it is shared by every evaluation."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    if isinstance(value, dict):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    return value


def _constant(value: object) -> _Code:
    def constant(_act: Activation) -> object:
        return value

    return _Code(constant, frozenset(), value)


class _Compiler:
    def __init__(self, source: str, checked: CheckResult) -> None:
        self.source = source
        self.checked = checked
        self.codes: dict[int, _Code] = {}

    def compile(self, node: ast.Node) -> _Code:
        code = self._compile(node)
        if not code.free and code.constant is _NOT_CONSTANT:
            code = _fold(code)
        self.codes[id(node)] = code
        return code

    def _compile(self, node: ast.Node) -> _Code:
        if isinstance(node, ast.Literal):
            return _constant(node.value)
        if isinstance(node, ast.Ident | ast.Select):
            return self.attribute(node)
        if isinstance(node, ast.Has):
            return self.has(node)
        if isinstance(node, ast.Index):
            return self.binary_call(node.operand, node.index, rt.index)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Unary):
            return self.unary(node)
        if isinstance(node, ast.Binary):
            return self.binary(node)
        if isinstance(node, ast.And):
            return self.logical(node, absorbing=False)
        if isinstance(node, ast.Or):
            return self.logical(node, absorbing=True)
        if isinstance(node, ast.Conditional):
            return self.conditional(node)
        if isinstance(node, ast.ListLit):
            return self.list_literal(node)
        if isinstance(node, ast.MapLit):
            return self.map_literal(node)
        if isinstance(node, ast.Comprehension):
            return self.comprehension(node)
        raise AssertionError(type(node))  # pragma: no cover  the parser makes no other node

    # ------------------------------------------------------------------ attributes

    def attribute(self, node: ast.Ident | ast.Select) -> _Code:
        path = ast.attribute_path(node)
        if path is None:
            assert isinstance(node, ast.Select)  # noqa: S101  an Ident always has a path
            operand = self.compile(node.operand)
            operand_fn = operand.fn
            field = node.field

            def select(act: Activation) -> object:
                return rt.select(operand_fn(act), field)

            return _Code(select, operand.free)
        is_root = id(path_root(node)) in self.checked.roots
        leaf = self.checked.types[id(node)]
        return _Code(_path_reader(path, leaf, is_root=is_root), frozenset({path[0]}))

    def has(self, node: ast.Has) -> _Code:
        operand = self.compile(node.operand)
        operand_fn = operand.fn
        field = node.field

        def has(act: Activation) -> bool:
            value = operand_fn(act)
            if type(value) is dict:
                return field in value
            return rt.has_field(value, field)

        return _Code(has, operand.free)

    # ------------------------------------------------------------------ operators

    def binary_call(
        self, left_node: ast.Node, right_node: ast.Node, fn: Callable[[object, object], object]
    ) -> _Code:
        left = self.compile(left_node)
        right = self.compile(right_node)
        left_fn = left.fn
        right_fn = right.fn

        def call(act: Activation) -> object:
            return fn(left_fn(act), right_fn(act))

        return _Code(call, left.free | right.free)

    def unary(self, node: ast.Unary) -> _Code:
        operand = self.compile(node.operand)
        operand_fn = operand.fn
        if node.op == "-":

            def negate(act: Activation) -> object:
                return rt.negate(operand_fn(act))

            return _Code(negate, operand.free)

        def logical_not(act: Activation) -> object:
            value = operand_fn(act)
            if value is True:
                return False
            if value is False:
                return True
            raise rt.no_overload("!", value)

        return _Code(logical_not, operand.free)

    def binary(self, node: ast.Binary) -> _Code:
        op = node.op
        if op in _ARITHMETIC:
            return self.arithmetic(node)
        left = self.compile(node.left)
        right = self.compile(node.right)
        free = left.free | right.free
        if op == "in":
            return _Code(self.membership(node, left, right), free)
        return _Code(self.comparison(node, left, right), free)

    def arithmetic(self, node: ast.Binary) -> _Code:
        op = node.op
        generic = _ARITHMETIC[op]
        if op not in ("+", "-", "*"):
            return self.binary_call(node.left, node.right, generic)
        left = self.compile(node.left)
        right = self.compile(node.right)
        left_fn = left.fn
        right_fn = right.fn
        fast = {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]

        def arithmetic(act: Activation) -> object:
            a = left_fn(act)
            b = right_fn(act)
            kind = type(a)
            if kind is type(b):
                if kind is int:
                    result = fast(a, b)
                    if _INT64_MIN <= result <= _INT64_MAX:
                        return result
                elif kind is float:
                    return fast(a, b)
            return generic(a, b)

        return _Code(arithmetic, left.free | right.free)

    def comparison(self, node: ast.Binary, left: _Code, right: _Code) -> Evaluator:
        op = node.op
        generic = _generic_comparison(op)
        left_fn = left.fn
        right_fn = right.fn

        def slow(act: Activation) -> object:
            return generic(left_fn(act), right_fn(act))

        left_path = ast.attribute_path(node.left)
        right_path = ast.attribute_path(node.right)
        types = self.checked.types
        if left_path is not None and right.constant is not _NOT_CONSTANT:
            leaf = types[id(node.left)]
            return _path_comparison(left_path, op, right.constant, leaf, slow)
        if right_path is not None and left.constant is not _NOT_CONSTANT:
            leaf = types[id(node.right)]
            return _path_comparison(right_path, _SWAPPED[op], left.constant, leaf, slow)
        fast = _OPERATORS[op]

        def comparison(act: Activation) -> object:
            a = left_fn(act)
            b = right_fn(act)
            kind = type(a)
            if kind is type(b) and (kind is int or kind is str or kind is float):
                return fast(a, b)
            return generic(a, b)

        return comparison

    def membership(self, node: ast.Binary, left: _Code, right: _Code) -> Evaluator:
        left_fn = left.fn
        right_fn = right.fn

        def slow(act: Activation) -> object:
            return _contains(left_fn(act), right_fn(act))

        path = ast.attribute_path(node.left)
        if path is not None and right.constant is not _NOT_CONSTANT:
            items, item_type = _lookup_set(right.constant)
            if items is not None:
                return _path_membership(path, items, item_type, slow)
        return slow

    def logical(self, node: ast.And | ast.Or, *, absorbing: bool) -> _Code:
        codes = [self.compile(child) for child in node.children]
        free = frozenset().union(*(code.free for code in codes))
        fns = tuple(code.fn for code in codes)
        # For &&, a false operand decides; for ||, a true one. Errors and non-bool
        # values are absorbed when some operand decides, in either order (CEL's
        # commutative logic); otherwise the first one is reported.
        decisive = absorbing
        op = "||" if absorbing else "&&"

        def slow(act: Activation) -> bool:
            error: ConditionError | None = None
            for fn in fns:
                try:
                    value = fn(act)
                except ConditionError as exc:
                    error = error or exc
                    continue
                if value is decisive:
                    return decisive
                if value is not (not decisive):
                    error = error or rt.no_overload(op, value)
            if error is not None:
                raise error
            return not decisive

        return _Code(_logical_fast(fns, slow, decisive=decisive), free)

    def conditional(self, node: ast.Conditional) -> _Code:
        cond = self.compile(node.cond)
        then = self.compile(node.then)
        otherwise = self.compile(node.otherwise)
        cond_fn = cond.fn
        then_fn = then.fn
        otherwise_fn = otherwise.fn

        def conditional(act: Activation) -> object:
            value = cond_fn(act)
            if value is True:
                return then_fn(act)
            if value is False:
                return otherwise_fn(act)
            raise rt.no_overload("?:", value)

        return _Code(conditional, cond.free | then.free | otherwise.free)

    # ------------------------------------------------------------------ literals

    def list_literal(self, node: ast.ListLit) -> _Code:
        codes = [self.compile(element) for element in node.elements]
        fns = tuple(code.fn for code in codes)

        def list_literal(act: Activation) -> object:
            return [fn(act) for fn in fns]

        return _Code(list_literal, frozenset().union(*(code.free for code in codes)))

    def map_literal(self, node: ast.MapLit) -> _Code:
        pairs = [(self.compile(key), self.compile(value)) for key, value in node.entries]
        fns = tuple((key.fn, value.fn) for key, value in pairs)

        def map_literal(act: Activation) -> object:
            return rt.build_map([(key(act), value(act)) for key, value in fns])

        free = frozenset().union(*(key.free | value.free for key, value in pairs))
        return _Code(map_literal, free)

    # ------------------------------------------------------------------ calls

    def call(self, node: ast.Call) -> _Code:
        name = node.name
        operand_nodes = node.args if node.target is None else (node.target, *node.args)
        if name == "dyn":
            return self.compile(node.args[0])
        if name in _UNARY_FUNCTIONS:
            operand = self.compile(operand_nodes[0])
            if name in _CONVERSIONS and operand.constant is not _NOT_CONSTANT:
                self.convert_constant(name, operand_nodes[0], operand.constant)
            return _Code(_unary_call(_UNARY_FUNCTIONS[name], operand.fn), operand.free)
        if name in _STRING_METHODS:
            regex = self.checked.regexes.get(id(node))
            if regex is not None:
                target = self.compile(operand_nodes[0])
                self.compile(operand_nodes[1])
                return _Code(_literal_matches(regex, target.fn), target.free)
            return self.binary_call(operand_nodes[0], operand_nodes[1], _STRING_METHODS[name])
        codes = [self.compile(operand) for operand in operand_nodes]
        fns = tuple(code.fn for code in codes)
        free = frozenset().union(*(code.free for code in codes))

        def time_part(act: Activation) -> object:
            return rt.time_part(name, *(fn(act) for fn in fns))

        return _Code(time_part, free)

    def convert_constant(self, name: str, argument: ast.Node, value: object) -> None:
        """Reject a conversion that fails on its constant argument: it would fail every time."""
        try:
            _UNARY_FUNCTIONS[name](value)
        except ConditionError as exc:
            raise ExpressionTypeError(
                str(exc),
                source=self.source,
                offset=argument.start,
                length=argument.end - argument.start,
                hint=conversion_hint(name, value),
                reason="value",
            ) from None

    # ------------------------------------------------------------------ macros

    def comprehension(self, node: ast.Comprehension) -> _Code:
        range_code = self.compile(node.range)
        predicate = None if node.predicate is None else self.compile(node.predicate)
        transform = None if node.transform is None else self.compile(node.transform)
        inner = frozenset().union(*(c.free for c in (predicate, transform) if c is not None))
        free = range_code.free | (inner - {node.var})
        range_fn = range_code.fn
        predicate_fn = None if predicate is None else predicate.fn
        transform_fn = None if transform is None else transform.fn
        var = node.var
        macro = node.macro

        self.has_comprehension = True

        def scope(act: Activation) -> tuple[Sequence[object], dict[str, object]]:
            items = _iteration_items(macro, range_fn(act))
            # One private copy of the activation per evaluation: the iteration
            # variable is rebound in it, so concurrent evaluations never share state.
            local = dict(act)
            budget = local.get(_BUDGET)
            if budget is None:  # compile-time folding, or a clause evaluated on its own
                budget = local[_BUDGET] = [MAX_ITERATIONS]
            budget[0] -= len(items)
            if budget[0] < 0:
                msg = f"the condition needs more than {MAX_ITERATIONS} macro iterations"
                raise ConditionError(msg)
            return items, local

        if macro in ("all", "exists"):
            assert predicate_fn is not None  # noqa: S101  the parser sets it for these
            return _Code(_quantifier(scope, var, predicate_fn, want=macro == "exists"), free)
        if macro == "exists_one":
            assert predicate_fn is not None  # noqa: S101  the parser sets it for exists_one
            return _Code(_exists_one(scope, var, predicate_fn), free)
        return _Code(_mapper(scope, var, predicate_fn, transform_fn, macro), free)


def _logical_fast(fns: tuple[Evaluator, ...], slow: Evaluator, *, decisive: bool) -> Evaluator:
    """The fast path of ``&&`` (decisive=False) and ``||`` (decisive=True).

    Operands run left to right until one decides; any error or non-bool value hands
    over to ``slow``, which re-runs the operands with CEL's error absorption. Chains of
    up to four operands are unrolled: it saves the loop's overhead on the hot path.
    """
    going = not decisive
    if len(fns) == 2:
        f1, f2 = fns

        def logical2(act: Activation) -> object:
            try:
                value = f1(act)
                if value is going:
                    value = f2(act)
                    if value is going:
                        return going
                if value is decisive:
                    return decisive
            except ConditionError:
                pass
            return slow(act)

        return logical2
    if len(fns) == 3:
        f1, f2, f3 = fns

        def logical3(act: Activation) -> object:
            try:
                value = f1(act)
                if value is going:
                    value = f2(act)
                    if value is going:
                        value = f3(act)
                        if value is going:
                            return going
                if value is decisive:
                    return decisive
            except ConditionError:
                pass
            return slow(act)

        return logical3
    if len(fns) == 4:
        f1, f2, f3, f4 = fns

        def logical4(act: Activation) -> object:
            try:
                value = f1(act)
                if value is going:
                    value = f2(act)
                    if value is going:
                        value = f3(act)
                        if value is going:
                            value = f4(act)
                            if value is going:
                                return going
                if value is decisive:
                    return decisive
            except ConditionError:
                pass
            return slow(act)

        return logical4

    def logical(act: Activation) -> object:
        try:
            for fn in fns:
                value = fn(act)
                if value is not going:
                    if value is decisive:
                        return decisive
                    break
            else:
                return going
        except ConditionError:
            pass
        return slow(act)

    return logical


def _fold(code: _Code) -> _Code:
    """Evaluate a variable-free node once; on failure keep it so the error stays a run-time one."""
    try:
        value = code.fn(_EMPTY)
    except ConditionError:
        return code
    return _constant(_freeze(value))


def _unary_call(fn: Callable[[object], object], operand_fn: Evaluator) -> Evaluator:
    def call(act: Activation) -> object:
        return fn(operand_fn(act))

    return call


def _literal_matches(regex: rt.Regex, target_fn: Evaluator) -> Evaluator:
    search = regex.search

    def matches(act: Activation) -> object:
        text = target_fn(act)
        if type(text) is str:
            return search(text) is not None
        return rt.matches(text, "")  # raises the no-overload error for the value's kind

    return matches


def _generic_comparison(op: str) -> Callable[[object, object], object]:
    if op == "==":
        return rt.equals
    if op == "!=":
        return lambda a, b: not rt.equals(a, b)

    def ordered(a: object, b: object) -> object:
        return rt.compare(op, a, b)

    return ordered


def _contains(item: object, container: object) -> bool:
    if isinstance(container, list | tuple):
        return rt.in_list(item, container)
    if isinstance(container, Mapping):
        return rt.in_map(item, container)
    raise rt.no_overload("in", item, container)


def _lookup_set(container: object) -> tuple[frozenset[object] | None, type]:
    """A frozenset for fast ``in`` when every element (or key) has one plain type."""
    if isinstance(container, Mapping):
        elements: list[object] = list(container)
    elif isinstance(container, tuple):
        elements = list(container)
    else:  # pragma: no cover  folded lists are tuples
        return None, _Never
    kinds = {type(element) for element in elements}
    if len(kinds) == 1 and next(iter(kinds)) in (str, int):
        return frozenset(elements), next(iter(kinds))
    return None, _Never


def _iteration_items(macro: str, value: object) -> Sequence[object]:
    if isinstance(value, list | tuple):
        return value
    if isinstance(value, Mapping):
        return list(value)
    raise rt.no_overload(macro, value)


def _quantifier(scope: _Scope, var: str, predicate: Evaluator, *, want: bool) -> Evaluator:
    """``exists`` (want=True) or ``all`` (want=False), with CEL's error absorption."""
    macro = "exists" if want else "all"

    def quantifier(act: Activation) -> bool:
        items, local = scope(act)
        error: ConditionError | None = None
        for item in items:
            local[var] = item
            try:
                value = predicate(local)
            except ConditionError as exc:
                error = error or exc
                continue
            if value is want:
                return want
            if value is not (not want):
                error = error or rt.no_overload(macro, value)
        if error is not None:
            raise error
        return not want

    return quantifier


def _exists_one(scope: _Scope, var: str, predicate: Evaluator) -> Evaluator:
    def exists_one(act: Activation) -> bool:
        items, local = scope(act)
        count = 0
        for item in items:
            local[var] = item
            value = predicate(local)
            if value is True:
                count += 1
            elif value is not False:
                raise rt.no_overload("exists_one", value)
        return count == 1

    return exists_one


def _mapper(
    scope: _Scope,
    var: str,
    predicate: Evaluator | None,
    transform: Evaluator | None,
    macro: str,
) -> Evaluator:
    def mapper(act: Activation) -> list[object]:
        items, local = scope(act)
        result: list[object] = []
        for item in items:
            local[var] = item
            if predicate is not None:
                keep = predicate(local)
                if keep is not True and keep is not False:
                    raise rt.no_overload(macro, keep)
                if not keep:
                    continue
            result.append(item if transform is None else transform(local))
        return result

    return mapper


# --------------------------------------------------------------------------- paths


def _missing(path: tuple[str, ...], depth: int, *, is_root: bool) -> ConditionError:
    if is_root:
        dotted = ".".join(path[: depth + 1])
        return ConditionError(f"attribute {dotted!r} is missing from the context")
    return ConditionError(f"no such key: {path[depth]!r}")


def _coercer(leaf: CelType, dotted: str) -> tuple[type, Callable[[object], object]] | None:
    """How to normalise a context value read at a path declared with type ``leaf``.

    Returns the type that needs no work, and a function for every other value. JSON
    contexts carry whole numbers as ints even where the schema says ``double``; uint
    attributes may be given as plain ints; a timestamp without a time zone is rejected,
    because comparing it with an aware one is meaningless.
    """
    if leaf == DOUBLE:

        def to_double(value: object) -> object:
            return float(value) if type(value) is int else value

        return float, to_double
    if leaf == UINT:

        def to_uint(value: object) -> object:
            if type(value) is int and value >= 0:
                return rt.UInt(value)
            return value

        return rt.UInt, to_uint
    if leaf == TIMESTAMP:

        def aware(value: object) -> object:
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                msg = f"attribute {dotted!r} is a timestamp without a time zone"
                raise ConditionError(msg)
            return value

        return _Never, aware
    return None


def _path_reader(path: tuple[str, ...], leaf: CelType, *, is_root: bool) -> Evaluator:
    """One closure reading ``a.b.c`` with the lookups inline; precise errors on failure."""
    coercion = _coercer(leaf, ".".join(path))
    plain, convert = coercion if coercion is not None else (object, None)

    def slow(act: object) -> object:
        value: object = act
        for depth, key in enumerate(path):
            if not isinstance(value, Mapping):
                if depth == 0:
                    raise ConditionError("the context must be a mapping")
                where = ".".join(path[:depth]) if is_root else path[depth - 1]
                msg = f"{where!r} is {rt.kind_of(value)}, not an object; cannot read {key!r}"
                raise ConditionError(msg)
            try:
                value = value[key]
            except KeyError:
                raise _missing(path, depth, is_root=is_root) from None
        return value if convert is None else convert(value)

    size = len(path)
    if size == 1 and convert is None:
        (a,) = path

        def read1(act: Activation) -> object:
            try:
                return act[a]
            except (LookupError, TypeError):
                return slow(act)

        return read1
    if size == 2 and convert is None:
        a, b = path

        def read2(act: Activation) -> object:
            try:
                return act[a][b]
            except (LookupError, TypeError):
                return slow(act)

        return read2
    if size == 2:
        a, b = path

        def read2c(act: Activation) -> object:
            try:
                value = act[a][b]
            except (LookupError, TypeError):
                return slow(act)
            return value if type(value) is plain or convert is None else convert(value)

        return read2c

    def read(act: Activation) -> object:
        value: Any = act
        try:
            for key in path:
                value = value[key]
        except (LookupError, TypeError):
            return slow(act)
        if convert is None or type(value) is plain:
            return value
        return convert(value)

    return read


_FAST_CONSTANTS: Final = frozenset({str, bytes, bool, type(None), dt.datetime, dt.timedelta})


def _path_comparison(
    path: tuple[str, ...], op: str, constant: object, leaf: CelType, slow: Evaluator
) -> Evaluator:
    """One closure for ``path <op> constant`` with an inline type test.

    A value of the constant's own type compares directly. Numbers follow CEL's
    heterogeneous comparison: when either side is a double both compare as doubles
    (and an attribute declared ``double`` always is one). Everything else, including
    every failure, takes ``slow``: the generic implementation with the operands in
    their original order, which gives CEL's answer or a precise error.
    """
    fast = _OPERATORS[op]
    same: type = type(constant)
    other: type = _Never
    direct: object = constant
    as_double: object = constant
    if same is float:
        other = int
    elif same is int and isinstance(constant, int):
        as_double = float(constant)
        if leaf == DOUBLE:
            same, other, direct = float, int, as_double
        else:
            other = float
    elif same not in _FAST_CONSTANTS:
        same = _Never
    if len(path) == 1:
        (a,) = path

        def compare1(act: Activation) -> object:
            try:
                value = act[a]
                kind = type(value)
                if kind is same:
                    return fast(value, direct)
                if kind is other:
                    return fast(float(value), as_double)
            except (LookupError, TypeError):
                # Missing keys, non-map parents and naive datetimes: let the slow path
                # explain.
                pass
            return slow(act)

        return compare1
    if len(path) == 2:
        a, b = path

        def compare2(act: Activation) -> object:
            try:
                value = act[a][b]
                kind = type(value)
                if kind is same:
                    return fast(value, direct)
                if kind is other:
                    return fast(float(value), as_double)
            except (LookupError, TypeError):
                pass
            return slow(act)

        return compare2
    if len(path) == 3:
        a, b, c = path

        def compare3(act: Activation) -> object:
            try:
                value = act[a][b][c]
                kind = type(value)
                if kind is same:
                    return fast(value, direct)
                if kind is other:
                    return fast(float(value), as_double)
            except (LookupError, TypeError):
                pass
            return slow(act)

        return compare3
    return slow


def _path_membership(
    path: tuple[str, ...], items: frozenset[object], item_type: type, slow: Evaluator
) -> Evaluator:
    """One closure for ``path in [constants]`` using a precomputed frozenset."""
    size = len(path)
    if size == 1:
        (a,) = path

        def member1(act: Activation) -> object:
            try:
                value = act[a]
            except (LookupError, TypeError):
                return slow(act)
            if type(value) is item_type:
                return value in items
            return slow(act)

        return member1
    if size == 2:
        a, b = path

        def member2(act: Activation) -> object:
            try:
                value = act[a][b]
            except (LookupError, TypeError):
                return slow(act)
            if type(value) is item_type:
                return value in items
            return slow(act)

        return member2
    return slow
