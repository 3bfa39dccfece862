"""The shop's identity as customers see it: which names and addresses can only be placeholders."""

from __future__ import annotations

import ipaddress

# RFC 2606 section 2 and RFC 6761 section 6: top-level names that never resolve on the public
# Internet. "localhost" (RFC 6761 6.3) is here too: a From at localhost cannot be answered and a
# link to it opens the customer's own machine, so to a customer it is as fake as .example.
RESERVED_TOP_LEVEL = frozenset({"example", "test", "invalid", "localhost"})
# RFC 2606 section 3: second-level names reserved for documentation, with every name under them.
RESERVED_SECOND_LEVEL = frozenset({"example.com", "example.net", "example.org"})

# config.example.toml's own shop: copied unchanged, customers would be greeted by a shop that does
# not exist and asked to call a number nobody answers for this shop.
EXAMPLE_SHOP_NAME = "Sakura Stationery"
EXAMPLE_SHOP_PHONE = "+81 3-1234-5678"


def reserved_domain(host: str) -> str | None:
    """The reserved name `host` falls under ("sakura.example" -> ".example", "mail.example.com"
    -> "example.com", "127.0.0.1" -> "a loopback address"), or None for a name customers can reach."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if not name:
        return None
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return "a loopback address" if address.is_loopback else None
    labels = name.split(".")
    if labels[-1] in RESERVED_TOP_LEVEL:
        return labels[-1] if len(labels) == 1 else f".{labels[-1]}"
    if len(labels) >= 2 and ".".join(labels[-2:]) in RESERVED_SECOND_LEVEL:
        return ".".join(labels[-2:])
    return None


def address_domain(address: str) -> str:
    """The domain of `Name <user@domain>` or `user@domain`."""
    return address.rsplit("<", 1)[-1].rstrip(">").rsplit("@", 1)[-1]
