"""The [intake] section: shop platforms' webhook secrets and the JSON API's token (file, environment or systemd credential)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from notifier.config.keys import DECLARED
from notifier.config.schema import Snapshot, table_of
from notifier.config.settings import (
    API_TOKEN_CREDENTIAL_NAME,
    API_TOKEN_ENV,
    API_TOKEN_MIN,
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
        api_token=_api_token(table, values, problems, snap, find_secret),
    )


def _api_token(
    table: Mapping[str, Any],
    values: Mapping[str, Any],
    problems: _Problems,
    snap: Snapshot,
    find_secret: FindSecret,
) -> str | None:
    """The JSON API's token from api_token_file, else $NOTIFIER_API_TOKEN, else the systemd
    credential `api-token`; without one the API is off."""
    token = find_secret(
        snap,
        table,
        values,
        "api_token_file",
        "intake",
        env=API_TOKEN_ENV,
        credential=API_TOKEN_CREDENTIAL_NAME,
        credential_key="intake",
        problems=problems,
    )
    if token is None or len(token) >= API_TOKEN_MIN:
        return token
    if "api_token_file" in table:
        key, source = "intake.api_token_file", f"in {table['api_token_file']}"
    elif snap.environment.get(API_TOKEN_ENV):
        key, source = "intake", f"in ${API_TOKEN_ENV}"
    else:
        key, source = "intake", f'of the systemd credential "{API_TOKEN_CREDENTIAL_NAME}"'
    problems.add(
        key,
        f"the API token {source} is {len(token)} characters long; at least {API_TOKEN_MIN} are "
        "needed (create one with `openssl rand -base64 32`)",
    )
    return None
