"""Colour checks for the shop's branding: WCAG 2 contrast of a #rrggbb colour against white."""

from __future__ import annotations

import re

HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
# WCAG 2.x level AA for normal text: buttons and links carry white or coloured text this size.
MIN_CONTRAST = 4.5


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(color: str) -> float:
    """Relative luminance of "#rrggbb" (WCAG 2.x definition)."""
    if not HEX_COLOR.fullmatch(color):
        raise ValueError(f"{color!r} is not a #rrggbb colour")
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_ratio(color: str, other: str = "#ffffff") -> float:
    """The contrast ratio of two colours, from 1 (none) to 21 (black on white)."""
    high, low = sorted((luminance(color), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)
