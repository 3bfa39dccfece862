"""The [intake] section: shop platforms' webhook secrets (file, environment or systemd credential)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from notifier.config.keys import DECLARED
from notifier.config.schema import Snapshot, table_of
from notifier.config.settings import (
    SHOPIFY_CREDENTIAL_NAME,
    SHOPIFY_SECRET_ENV,
    WOOCOMMERCE_CREDENTIAL_NAME,
    WOOCOMMERCE_SECRET_ENV,
    IntakeSettings,
)
from notifier.config.toml import _Problems

# A webhook secret is the only thing between a forger and the watchlist.
INTAKE_SECRET_MIN = 16
# parse._find_secret, passed in: this module stays below parse.py.
FindSecret = Callable[..., str | None]


def _intake(
    data: Mapping[str, Any], problems: _Problems, snap: Snapshot, find_secret: FindSecret
) -> IntakeSettings:
    table = table_of(data, "intake", problems)
    values = DECLARED.walk(table, "intake", problems, snap)
    secrets: dict[str, str | None] = {}
    for platform, env, credential in (
        ("shopify", SHOPIFY_SECRET_ENV, SHOPIFY_CREDENTIAL_NAME),
        ("woocommerce", WOOCOMMERCE_SECRET_ENV, WOOCOMMERCE_CREDENTIAL_NAME),
    ):
        key = f"{platform}_secret_file"
        secret = find_secret(
            snap,
            table,
            values,
            key,
            "intake",
            env=env,
            credential=credential,
            credential_key=f"intake.{key}",
            problems=problems,
        )
        if secret is not None and len(secret) < INTAKE_SECRET_MIN:
            problems.add(
                f"intake.{key}",
                f"the {platform} secret (from {key}, ${env} or the credential {credential}) is "
                f"{len(secret)} characters long; at least {INTAKE_SECRET_MIN} are needed",
            )
            secret = None
        secrets[platform] = secret or None
    return IntakeSettings(
        shopify_secret=secrets["shopify"],
        woocommerce_secret=secrets["woocommerce"],
        default_locale=str(values.get("default_locale", "en")),
    )
