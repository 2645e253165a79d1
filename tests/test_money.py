from decimal import Decimal

import pytest

from costrecon_daemon.money import (
    CurrencyMismatch,
    Money,
    MoneyError,
    display,
    parse_amount,
    to_units,
)


@pytest.mark.parametrize(
    ("text", "mark", "expected"),
    [
        ("12.50", ".", "12.5000"),
        ("$1,234.56", ".", "1234.5600"),
        ("0000074.34", ".", "74.3400"),
        ("1.234,50 €", ",", "1234.5000"),
        ("(5.00)", ".", "-5.0000"),
        ("7.00-", ".", "-7.0000"),
        ("USD 19.99", ".", "19.9900"),
    ],
)
def test_amounts_as_distributors_write_them(text, mark, expected):
    assert parse_amount(text, decimal_mark=mark) == Decimal(expected)


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "NaN", "--"])
def test_non_numbers_are_refused(bad):
    with pytest.raises(MoneyError):
        parse_amount(bad)


def test_floats_are_refused_everywhere():
    with pytest.raises(TypeError):
        parse_amount(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_units(1.5)  # type: ignore[arg-type]


def test_currencies_never_mix():
    with pytest.raises(CurrencyMismatch):
        Money(Decimal("1"), "USD") - Money(Decimal("1"), "EUR")
    assert (Money(Decimal("3"), "USD") - Money(Decimal("1.25"), "USD")).amount == Decimal("1.75")


def test_display_keeps_meaningful_places():
    assert display(Decimal("12.5")) == "12.50"
    assert display(Decimal("0.0425")) == "0.0425"
    assert display(None) == "—"
