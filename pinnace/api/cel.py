"""CEL, the Common Expression Language, as Kubernetes speaks it (no I/O).

Used by ValidatingAdmissionPolicy (`apiserver/admission_policy.py`) and by
CustomResourceDefinitions' `x-kubernetes-validations`. The interpreter is the
`common-expression-language` package (cel-rust underneath, see pyproject.toml);
this module adds what Kubernetes adds on top of standard CEL and one error type:

    program = compile("self.replicas <= 10")       # CelError on a syntax error
    program.evaluate({"self": obj, "oldSelf": old})  # CelError on a runtime error

Kubernetes' libraries, as functions on the shared `_FUNCTIONS` table (receiver-style
calls such as `"a".lowerAscii()` reach the same Python function with the receiver
as the first argument):

    strings   charAt indexOf lastIndexOf lowerAscii upperAscii replace split
              substring trim join reverse strings.quote      (the package's stdlib)
    lists     isSorted sum min max indexOf lastIndexOf (lists and strings)
    regex     find findAll (and CEL's own matches)
    quantity  quantity isQuantity; isGreaterThan isLessThan compareTo asInteger
              asApproximateFloat isInteger sign add sub
    url       url isURL; getScheme getHost getHostname getPort getEscapedPath getQuery
    ip/cidr   ip isIP cidr isCIDR; family isLoopback isUnspecified containsIP
              containsCIDR prefixLength

Quantities, URLs, IPs and CIDRs are CEL maps carrying a `__type__` key (the
interpreter has no user-defined types); two quantities compare equal when their
canonical forms are equal.

Cost limit: Kubernetes bounds a rule's cost so that no rule stalls the server. The
interpreter cannot be interrupted mid-evaluation, so the bound is checked *before*
evaluating: the activation's size (every list item, map entry and scalar counts one)
raised to the depth of nested comprehension macros (`all`, `exists`, `exists_one`,
`map`, `filter`; `map`/`filter` count one more, the interpreter builds their lists
in quadratic time) must stay under `COST_LIMIT`, else `CelError` says the
estimated cost exceeds the budget. An expression over `MAX_EXPRESSION_LENGTH`
characters is refused at compile time.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import cel as _cel
from cel import stdlib as _stdlib

from pinnace.api import quantity as _quantity

COST_LIMIT = 10_000_000
MAX_EXPRESSION_LENGTH = 5000
_MACROS = {"all": 0, "exists": 0, "exists_one": 0, "map": 1, "filter": 1}
_TYPE = "__type__"


class CelError(Exception):
    """A CEL expression did not compile or did not evaluate; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Program:
    """A compiled expression, evaluated against any number of activations."""

    def __init__(self, source: str, compiled: Any, depth: int) -> None:
        self.source = source
        self._compiled = compiled
        self._depth = depth

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """The expression's value given these variables (CelError on failure)."""
        if self._depth:
            size = sum(_size(v) for v in activation.values())
            if size ** self._depth > COST_LIMIT:
                raise CelError("operation cancelled: actual cost limit exceeded "
                               f"(estimated from {size} input elements and "
                               f"comprehensions nested {self._depth} deep)")
        context = _cel.Context(variables=dict(activation), functions=_FUNCTIONS)
        try:
            return _plain(self._compiled.execute(context))
        except KeyError as e:
            raise CelError(f"no such key: {e.args[0] if e.args else ''}") from None
        except Exception as e:  # the interpreter's errors carry no common base
            raise CelError(_clean(str(e))) from None


def compile(expression: str) -> Program:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CelError(f"expression too long: {len(expression)} characters, at most "
                       f"{MAX_EXPRESSION_LENGTH}")
    try:
        compiled = _cel.compile(expression)
    except Exception as e:
        raise CelError(f"compilation failed: {_clean(str(e))}") from None
    return Program(expression, compiled, _comprehension_depth(expression))


def _clean(message: str) -> str:
    return message.split(". Check that")[0].strip()


def _size(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + sum(_size(v) for v in value.values())
    if isinstance(value, list | tuple):
        return 1 + sum(_size(v) for v in value)
    return 1


def _comprehension_depth(source: str) -> int:
    """How deep comprehension macros nest (weighted by `_MACROS`), read from the
    source with string literals skipped."""
    code = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', source)
    stack: list[int] = []  # the weight of each open parenthesis
    depth = deepest = 0
    for m in re.finditer(r"\.\s*([A-Za-z_]\w*)\s*\(|[()]", code):
        if m.group(1) is not None:
            weight = _MACROS[m.group(1)] + 1 if m.group(1) in _MACROS else 0
            stack.append(weight)
            depth += weight
            deepest = max(deepest, depth)
        elif m.group(0) == "(":
            stack.append(0)
        elif stack:
            depth -= stack.pop()
    return deepest


def _plain(value: Any) -> Any:
    """Results as plain Python values (the interpreter's optional to its value)."""
    if isinstance(value, _cel.OptionalValue):
        return None
    return value


# -- lists and strings ----------------------------------------------------------------------

def _index_of(seq: Any, item: Any) -> int:
    if isinstance(seq, str):
        return seq.find(item)
    return next((i for i, x in enumerate(seq) if x == item), -1)


def _last_index_of(seq: Any, item: Any) -> int:
    if isinstance(seq, str):
        return seq.rfind(item)
    return next((i for i in range(len(seq) - 1, -1, -1) if seq[i] == item), -1)


def _is_sorted(seq: list[Any]) -> bool:
    return all(_key(a) <= _key(b) for a, b in itertools.pairwise(seq))


def _key(value: Any) -> Any:
    if isinstance(value, Mapping) and value.get(_TYPE) == "quantity":
        return _quantity.parse_quantity(value["value"])
    return value


def _min(*args: Any) -> Any:
    items = list(args[0]) if len(args) == 1 and isinstance(args[0], list) else list(args)
    if not items:
        raise ValueError("min called on an empty list")
    return min(items, key=_key)


def _max(*args: Any) -> Any:
    items = list(args[0]) if len(args) == 1 and isinstance(args[0], list) else list(args)
    if not items:
        raise ValueError("max called on an empty list")
    return max(items, key=_key)


def _find(text: str, pattern: str) -> str:
    m = re.search(pattern, text)
    return m.group(0) if m else ""


def _find_all(text: str, pattern: str, limit: int = -1) -> list[str]:
    found = [m.group(0) for m in re.finditer(pattern, text)]
    return found if limit < 0 else found[:limit]


# -- quantity -------------------------------------------------------------------------------

def _make_quantity(text: str) -> dict[str, Any]:
    try:
        return {_TYPE: "quantity", "value": _quantity.canonicalize(text)}
    except ValueError as e:
        raise ValueError(f"quantity: {e}") from None


def _is_quantity(text: str) -> bool:
    try:
        _quantity.parse_quantity(text)
    except ValueError:
        return False
    return True


def _q(value: Any) -> Any:
    if not (isinstance(value, Mapping) and value.get(_TYPE) == "quantity"):
        raise ValueError("not a quantity")
    return _quantity.parse_quantity(value["value"])


def _compare_to(a: Any, b: Any) -> int:
    x, y = _q(a), _q(b)
    return (x > y) - (x < y)


def _as_integer(a: Any) -> int:
    value = _q(a)
    if value.denominator != 1:
        raise ValueError("cannot convert value to integer")
    return int(value)


def _add(a: Any, b: Any) -> dict[str, Any]:
    other = _q(b) if isinstance(b, Mapping) else b
    return {_TYPE: "quantity", "value": _quantity.format_quantity(_q(a) + other)}


def _sub(a: Any, b: Any) -> dict[str, Any]:
    other = _q(b) if isinstance(b, Mapping) else b
    return {_TYPE: "quantity", "value": _quantity.format_quantity(_q(a) - other)}


# -- url ------------------------------------------------------------------------------------

def _make_url(text: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(text)
    if not parts.scheme and not text.startswith("/"):
        raise ValueError(f"URL parse error during conversion from string: {text}")
    return {_TYPE: "url", "scheme": parts.scheme, "host": parts.netloc,
            "hostname": parts.hostname or "", "port": str(parts.port or "") if
            parts.netloc else "", "path": parts.path, "query": parts.query}


def _url_query(u: Mapping[str, Any]) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(u["query"], keep_blank_values=True)


# -- ip and cidr ----------------------------------------------------------------------------

def _make_ip(text: str) -> dict[str, Any]:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(
            f"IP Address '{text}' parse error during conversion from string") from None
    return {_TYPE: "ip", "value": text}


def _make_cidr(text: str) -> dict[str, Any]:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"network address parse error during conversion from string: "
                         f"{text}") from None
    return {_TYPE: "cidr", "value": text}


def _valid(make: Callable[[str], Any]) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            make(text)
        except ValueError:
            return False
        return True
    return check


def _ip_of(value: Any) -> Any:
    if isinstance(value, Mapping) and value.get(_TYPE) == "cidr":
        return ipaddress.ip_network(value["value"], strict=False)
    return ipaddress.ip_address(value["value"] if isinstance(value, Mapping) else value)


def _ip_or_cidr(*args: Any) -> Any:
    """`ip("1.2.3.4")` makes an IP; `cidr("10.0.0.0/8").ip()` is the CIDR's address."""
    (value,) = args
    if isinstance(value, Mapping):
        return {_TYPE: "ip", "value": value["value"].split("/")[0]}
    return _make_ip(value)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: func for library in _stdlib.EXTENSIONS.values() for name, func in library.items()}
_FUNCTIONS.update({
    "indexOf": _index_of, "lastIndexOf": _last_index_of, "isSorted": _is_sorted,
    "min": _min, "max": _max, "find": _find, "findAll": _find_all,
    "quantity": _make_quantity, "isQuantity": _is_quantity,
    "isGreaterThan": lambda a, b: _q(a) > _q(b), "isLessThan": lambda a, b: _q(a) < _q(b),
    "compareTo": _compare_to, "asInteger": _as_integer,
    "asApproximateFloat": lambda a: float(_q(a)),
    "isInteger": lambda a: _q(a).denominator == 1,
    "sign": lambda a: (_q(a) > 0) - (_q(a) < 0), "add": _add, "sub": _sub,
    "url": _make_url, "isURL": _valid(_make_url),
    "getScheme": lambda u: u["scheme"], "getHost": lambda u: u["host"],
    "getHostname": lambda u: u["hostname"], "getPort": lambda u: u["port"],
    "getEscapedPath": lambda u: u["path"], "getQuery": _url_query,
    "ip": _ip_or_cidr, "isIP": _valid(_make_ip), "cidr": _make_cidr,
    "isCIDR": _valid(_make_cidr),
    "family": lambda v: _ip_of(v).version,
    "isLoopback": lambda v: _ip_of(v).is_loopback,
    "isUnspecified": lambda v: _ip_of(v).is_unspecified,
    "containsIP": lambda c, v: _ip_of(v) in _ip_of(c),
    "containsCIDR": lambda c, v: _ip_of(v).subnet_of(_ip_of(c)),
    "prefixLength": lambda c: _ip_of(c).prefixlen,
})
