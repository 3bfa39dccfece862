"""The customer pages: one-click unsubscribe (/u/{token}) and the tracking page (/t/{token})."""

from __future__ import annotations

from starlette.routing import BaseRoute

from notifier.web.state import DaemonView


def routes(view: DaemonView) -> list[BaseRoute]:
    return []
