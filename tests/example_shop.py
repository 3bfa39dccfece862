"""config.example.toml as a shop makes it its own: the lines marked "<- your shop" changed."""

from __future__ import annotations

from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
MARK = "<- your shop"
# A shop's own domain in tests: mail in the suite only ever reaches a loopback aiosmtpd.
SHOP_DOMAIN = "sakura-bungu.jp"
SHOP_NAME = "Sakura Bungu"
SHOP_PHONE = "+81 3-0000-0000"


def made_own(text: str) -> str:
    """`text` (config.example.toml) with the identity on every marked line replaced."""
    lines = []
    for line in text.splitlines(keepends=True):
        if MARK in line:
            line = (
                line.replace("smtp.example.com", f"smtp.{SHOP_DOMAIN}")
                .replace("sakura.example", SHOP_DOMAIN)
                .replace("Sakura Stationery", SHOP_NAME)
                .replace("+81 3-1234-5678", SHOP_PHONE)
            )
        lines.append(line)
    return "".join(lines)


def marked_lines(text: str) -> set[int]:
    """The 1-based numbers of the lines every shop changes."""
    return {number for number, line in enumerate(text.splitlines(), 1) if MARK in line}
