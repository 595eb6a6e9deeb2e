"""`resource.Quantity`: parsing, canonical formatting and comparison.

A quantity is an exact rational number (`fractions.Fraction`, never a float) plus
the *format* it was written in, which decides how it prints back:

    BinarySI         Ki Mi Gi Ti Pi Ei       "1.5Gi" -> "1536Mi"
    DecimalSI        n u m "" k M G T P E    "1.5"   -> "1500m",  "2000" -> "2k"
    DecimalExponent  e3, E-6, ...            "1e3"   -> "1e3"

Like Kubernetes, parsing rounds a non-zero magnitude *up* to a whole nano (so
asking for some resource never yields none) and caps it at 2^63-1; the
canonical form is the largest suffix that keeps the number an integer.
Binary quantities under 1024, or that are not whole numbers, print as DecimalSI.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"

SPLIT_RE = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
FORMAT_ERROR = f"quantities must match the regular expression '{SPLIT_RE}'"
NUMERIC_ERROR = "unable to parse numeric part of quantity"
SUFFIX_ERROR = "unable to parse quantity's suffix"

_SPLIT = re.compile(SPLIT_RE)
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
            "E": 18}
_DECIMAL_BY_EXPONENT = {v: k for k, v in _DECIMAL.items()}
_BINARY_BY_EXPONENT = {v: k for k, v in _BINARY.items()}
_NANO = 10**9
_MAX = Fraction(2**63 - 1)

Number = Fraction | int | float | str


def _interpret_suffix(suffix: str) -> tuple[int, int, str]:
    """suffix -> (base, exponent, format); ValueError if unknown."""
    if suffix in _DECIMAL:
        return 10, _DECIMAL[suffix], DECIMAL_SI
    if suffix in _BINARY:
        return 2, _BINARY[suffix], BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        try:
            return 10, int(suffix[1:], 10), DECIMAL_EXPONENT
        except ValueError:
            pass
    raise ValueError(SUFFIX_ERROR)


@functools.lru_cache(maxsize=4096, typed=True)
def parse_quantity_format(text: str | int | float) -> tuple[Fraction, str]:
    """Parse a quantity; returns its exact value and the format it prints in. Cached:
    the same few quantities ("100m", "128Mi") come back on every write."""
    if isinstance(text, bool):
        raise ValueError(FORMAT_ERROR)
    if isinstance(text, int):
        text = str(text)
    elif isinstance(text, float):
        if not math.isfinite(text):
            raise ValueError(FORMAT_ERROR)
        text = repr(text)
    match = _SPLIT.match(text)
    if match is None:
        raise ValueError(FORMAT_ERROR)
    number, suffix = match.group(1), match.group(2)
    if number.count(".") > 1:
        raise ValueError(FORMAT_ERROR)
    digits = number.lstrip("+-")
    if not digits.strip("."):
        raise ValueError(NUMERIC_ERROR)
    base, exponent, fmt = _interpret_suffix(suffix)

    value = Fraction(digits if not digits.endswith(".") else digits + "0")
    value *= Fraction(base) ** exponent
    # Round the magnitude up to a whole nano, then cap: Kubernetes' rules.
    if value.denominator != 1 and (value * _NANO).denominator != 1:
        value = Fraction(math.ceil(value * _NANO), _NANO)
    value = min(value, _MAX)
    if fmt == BINARY_SI and 0 < value < 1:
        fmt = DECIMAL_SI
    if number.startswith("-"):
        value = -value
    return value, fmt


def parse_quantity(text: str | int | float) -> Fraction:
    """The exact value of a quantity ("500m" -> 1/2, "1Ki" -> 1024)."""
    return parse_quantity_format(text)[0]


def _decimal(value: Fraction, fmt: str) -> str:
    # value is a whole number of nanos: strip factors of ten, then step the
    # exponent down to a multiple of three so it names a suffix.
    mantissa, exponent = int(value * _NANO), -9
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    shift = exponent % 3
    mantissa *= 10**shift
    exponent -= shift
    if fmt == DECIMAL_EXPONENT:
        suffix = f"e{exponent}" if exponent else ""
    else:
        suffix = _DECIMAL_BY_EXPONENT.get(exponent)
        if suffix is None:  # beyond E: only reachable above the cap, keep it exact
            mantissa, suffix = mantissa * 10 ** (exponent - 18), "E"
    return f"{mantissa}{suffix}"


def format_quantity(value: Fraction | int, suffix_style: str = DECIMAL_SI) -> str:
    """Canonical text of a value in a format (BinarySI, DecimalSI, DecimalExponent)."""
    value = Fraction(value)
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if (magnitude * _NANO).denominator != 1:
        magnitude = Fraction(math.ceil(magnitude * _NANO), _NANO)
    fmt = suffix_style
    if fmt == BINARY_SI and (magnitude < 1024 or magnitude.denominator != 1):
        fmt = DECIMAL_SI
    if fmt != BINARY_SI:
        return sign + _decimal(magnitude, fmt if fmt == DECIMAL_EXPONENT else DECIMAL_SI)
    amount, exponent = int(magnitude), 0
    while amount % 1024 == 0 and exponent < 60:
        amount //= 1024
        exponent += 10
    return f"{sign}{amount}{_BINARY_BY_EXPONENT.get(exponent, '')}"


def canonicalize(text: str | int | float) -> str:
    """The form Kubernetes stores and returns: "1.5Gi" -> "1536Mi", "0.5" -> "500m"."""
    value, fmt = parse_quantity_format(text)
    return format_quantity(value, fmt)


def quantity_cmp(a: Number, b: Number) -> int:
    """-1, 0 or 1 as quantity a is less than, equal to or greater than b."""
    x = a if isinstance(a, Fraction) else parse_quantity(a)
    y = b if isinstance(b, Fraction) else parse_quantity(b)
    return (x > y) - (x < y)


def milli_value(text: Number) -> int:
    """The value in thousandths, rounded up (CPU requests are compared this way)."""
    value = text if isinstance(text, Fraction) else parse_quantity(text)
    return math.ceil(value * 1000)


def int_value(text: Number) -> int:
    """The value as a whole number, rounded up (like Quantity.Value())."""
    amount = text if isinstance(text, Fraction) else parse_quantity(text)
    return math.ceil(amount)
