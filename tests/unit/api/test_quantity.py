"""resource.Quantity: parsing, canonical form, comparison (Kubernetes' outputs)."""

from fractions import Fraction

import pytest

from pinnace.api.quantity import (
    BINARY_SI,
    DECIMAL_EXPONENT,
    DECIMAL_SI,
    FORMAT_ERROR,
    canonicalize,
    format_quantity,
    int_value,
    milli_value,
    parse_quantity,
    parse_quantity_format,
    quantity_cmp,
)


@pytest.mark.parametrize(("text", "value"), [
    ("1Gi", 2**30), ("500m", Fraction(1, 2)), ("1.5Gi", 3 * 2**29), ("2", 2), ("1Ki", 1024),
    ("1Mi", 2**20), ("1Ti", 2**40), ("1Pi", 2**50), ("1Ei", 2**60), ("1k", 1000),
    ("1M", 10**6), ("1G", 10**9), ("1T", 10**12), ("1P", 10**15), ("1E", 10**18),
    ("5n", Fraction(5, 10**9)), ("5u", Fraction(5, 10**6)), ("1e3", 1000), ("1E3", 1000),
    ("12e-3", Fraction(12, 1000)), ("-1.5", Fraction(-3, 2)), ("+5", 5), (".5", Fraction(1, 2)),
    ("5.", 5), ("0", 0), (1, 1), (2.5, Fraction(5, 2)), ("100", 100),
])
def test_parse(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize(("text", "canonical"), [
    ("1Gi", "1Gi"), ("500m", "500m"), ("1.5Gi", "1536Mi"), ("2", "2"), ("2000", "2k"),
    ("1.5", "1500m"), ("0.5", "500m"), ("1e3", "1e3"), ("1E3", "1e3"), ("1024Mi", "1Gi"),
    ("100Mi", "100Mi"), ("1024", "1024"), ("0.5Ki", "512"), ("1.5Ki", "1536"), ("0", "0"),
    ("-1.5", "-1500m"), ("0.1m", "100u"), ("0.0000000001", "1n"), ("1000m", "1"),
    ("1500000", "1500k"), ("3500m", "3500m"), ("123456789n", "123456789n"), ("12e-3", "12e-3"),
    ("100000000000000000000", "9223372036854775807"), (1, "1"), (0.25, "250m"),
])
def test_canonical_form(text, canonical):
    assert canonicalize(text) == canonical


def test_round_trip_is_stable():
    for text in ["1Gi", "1536Mi", "500m", "2k", "1e3", "100u", "7", "1Ei", "12e-3", "-3Ki"]:
        assert canonicalize(canonicalize(text)) == canonicalize(text)
        assert parse_quantity(canonicalize(text)) == parse_quantity(text)


def test_formats_remembered():
    assert parse_quantity_format("1Gi")[1] == BINARY_SI
    assert parse_quantity_format("1k")[1] == DECIMAL_SI
    assert parse_quantity_format("1e3")[1] == DECIMAL_EXPONENT
    # a binary quantity below one prints as decimal
    assert parse_quantity_format("0.5Ki")[1] == BINARY_SI
    assert parse_quantity_format(".0001Ki") == (Fraction(1024, 10000), DECIMAL_SI)
    assert canonicalize(".0001Ki") == "102400u"


def test_format_quantity_styles():
    assert format_quantity(2**31, BINARY_SI) == "2Gi"
    assert format_quantity(1000, BINARY_SI) == "1k"  # under 1024: decimal
    assert format_quantity(1536, BINARY_SI) == "1536"
    assert format_quantity(Fraction(3, 2), DECIMAL_SI) == "1500m"
    assert format_quantity(5000, DECIMAL_EXPONENT) == "5e3"
    assert format_quantity(0) == "0"


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "1KiB", "1 Gi", "Gi", "-", "1Gi ", "0x10"])
def test_invalid_quantities_say_the_regex(bad):
    with pytest.raises(ValueError) as e:
        parse_quantity(bad)
    assert str(e.value) == FORMAT_ERROR
    assert "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'" in str(e.value)


@pytest.mark.parametrize("bad", ["1Mi3", "1e", "1iK", "1mk"])
def test_unknown_suffix(bad):
    with pytest.raises(ValueError, match="unable to parse quantity's suffix"):
        parse_quantity(bad)


def test_compare_across_formats():
    assert quantity_cmp("1Gi", "1024Mi") == 0
    assert quantity_cmp("1G", "1Gi") == -1
    assert quantity_cmp("1500m", "1") == 1
    assert quantity_cmp(Fraction(1, 2), "500m") == 0
    assert milli_value("0.1") == 100
    assert milli_value("1n") == 1  # rounds up
    assert int_value("1.2") == 2
