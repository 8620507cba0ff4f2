"""How reports write numbers: a fixed number of significant digits, never an exponent.

A QA reader compares columns by eye; ``-2e-05`` beside ``0.949`` reads as a large number
and a printed ``1.5e+02`` is easy to misread, so tables, heat maps and plot labels write
every number out in full.
"""

from __future__ import annotations


def plain_number(x: float, sig: int = 3, *, signed: bool = False) -> str:
    """``x`` to ``sig`` significant digits, written out in full, never with an exponent.

    Trailing zeros are kept (they say the precision); a value with ``sig`` or more integer
    digits is rounded to a whole number, every digit kept (150.2 → "150", 1234.6 → "1235");
    the minus sign is a true minus.
    E.g. 0.94932 → "0.949", −1.954e−05 → "−0.0000195", 0.09996 → "0.100".
    """
    if x == 0:
        return "0"
    mantissa, exp_text = f"{abs(x):.{sig - 1}e}".split("e")  # rounds once, to sig digits
    exp = int(exp_text)
    digits = mantissa.replace(".", "")
    if exp >= sig - 1:
        body = f"{abs(x):.0f}"
    elif exp >= 0:
        body = f"{digits[: exp + 1]}.{digits[exp + 1 :]}"
    else:
        body = "0." + "0" * (-exp - 1) + digits
    sign = "−" if x < 0 else ("+" if signed else "")
    return sign + body


def plain_level(x: float) -> str:
    """A configured level (dose, sigma, ...) as written, without an exponent: 0.00001, 100."""
    text = repr(float(x))
    if "e" not in text:
        return text[:-2] if text.endswith(".0") else text
    mantissa, exp_text = text.split("e")
    exp = int(exp_text)
    neg = mantissa.startswith("-")
    digits = mantissa.lstrip("-").replace(".", "")
    point = 1 + exp  # position of the decimal point in ``digits``
    if point <= 0:
        body = "0." + "0" * -point + digits.rstrip("0")
    elif point >= len(digits):
        body = digits + "0" * (point - len(digits))
    else:
        body = f"{digits[:point]}.{digits[point:]}"
    return ("-" if neg else "") + body
