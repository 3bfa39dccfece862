"""Settings into working parts: the mail settings, signed links, message queuer and outbox policy every shell builds alike."""

from __future__ import annotations

import os
import socket

from notifier.config import Settings, web_secret
from notifier.core.compose import MailSettings
from notifier.core.links import Links, Signer
from notifier.core.render import Renderer
from notifier.core.sending import OutboxPolicy
from notifier.pipeline.poll import Notifier


def web_links(settings: Settings) -> Links | None:
    """The web face's signed links, when [http] is set and its secret can be had here."""
    http = settings.http
    if http is None or not http.secret:
        return None
    return Links(public_url=http.public_url, signer=Signer(http.secret))


def mail_settings(settings: Settings) -> MailSettings:
    n = settings.notifications
    return MailSettings(
        web=web_links(settings),
        sender=n.sender,
        shop_name=n.shop_name,
        shop_phone=n.shop_phone,
        reply_to=n.reply_to,
        unsubscribe=n.unsubscribe,
        tracking_base_url=settings.japanpost.base_url,
        logo_url=n.logo_url,
        brand_color=n.brand_color,
        shop_url=n.shop_url,
        board_url=(
            f"{settings.http.public_url}/admin/"
            if settings.http is not None and settings.http.admin_password is not None
            else None
        ),
    )


def notifier_for(settings: Settings) -> Notifier:
    """What queues customer mail: with [http], its links need the secret (a ConfigError if it
    cannot be had, rather than messages queued without their unsubscribe link)."""
    web_secret(settings)
    return Notifier(
        rules=settings.notifications.rules,
        mail=mail_settings(settings),
        renderer=Renderer(settings.notifications.templates),
        windows=settings.estimates,
    )


def outbox_policy(settings: Settings) -> OutboxPolicy:
    return OutboxPolicy(
        max_attempts=settings.notifications.max_attempts,
        quiet_hours=settings.notifications.quiet_hours,
        default_time_zone=settings.notifications.default_time_zone,
        lease=settings.notifications.outbox_lease,
    )


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
