"""The [intake] section: shop platforms' webhook secrets (file, environment or systemd credential)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from notifier.config.checks import _section
from notifier.config.settings import (
    SHOPIFY_CREDENTIAL_NAME,
    SHOPIFY_SECRET_ENV,
    WOOCOMMERCE_CREDENTIAL_NAME,
    WOOCOMMERCE_SECRET_ENV,
    IntakeSettings,
)
from notifier.config.sources import _find_secret
from notifier.config.toml import _Problems

# A webhook secret is the only thing between a forger and the watchlist.
INTAKE_SECRET_MIN = 16


def _intake(data: dict[str, Any], problems: _Problems, base: Path) -> IntakeSettings:
    table = _section(data, "intake", problems)
    secrets: dict[str, str | None] = {}
    for platform, env, credential in (
        ("shopify", SHOPIFY_SECRET_ENV, SHOPIFY_CREDENTIAL_NAME),
        ("woocommerce", WOOCOMMERCE_SECRET_ENV, WOOCOMMERCE_CREDENTIAL_NAME),
    ):
        key = f"{platform}_secret_file"
        secret = _find_secret(
            table,
            key,
            "intake",
            env=env,
            credential=credential,
            credential_key=f"intake.{key}",
            problems=problems,
            base=base,
        )
        if secret is not None and len(secret) < INTAKE_SECRET_MIN:
            problems.add(
                f"intake.{key}",
                f"the {platform} secret (from {key}, ${env} or the credential {credential}) is "
                f"{len(secret)} characters long; at least {INTAKE_SECRET_MIN} are needed",
            )
            secret = None
        secrets[platform] = secret or None
    locale = table.get("default_locale", "en")
    if locale not in ("en", "ja"):
        problems.add("intake.default_locale", 'must be "en" or "ja"')
        locale = "en"
    return IntakeSettings(
        shopify_secret=secrets["shopify"], woocommerce_secret=secrets["woocommerce"], default_locale=locale
    )
