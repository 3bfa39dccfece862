"""The exception tree every module raises, so callers never see library exception types.

NotifierError
 ├── ConfigError          bad configuration (exit code 2)
 ├── InvalidNumberError   a tracking number that cannot be right, with the reason
 └── FetchError           talking to Japan Post failed; `.transient` says whether to retry
      ├── TransientFetchError   timeouts, connection errors, 5xx, 429
      └── PermanentFetchError   4xx, redirects off-site, oversized or non-HTML bodies
"""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(NotifierError, ValueError):
    """The configuration is invalid."""


class InvalidNumberError(NotifierError, ValueError):
    """The tracking number cannot be a Japan Post number."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r} is not a valid tracking number: {reason}")
        self.text = text
        self.reason = reason


class FetchError(NotifierError):
    """A Japan Post request failed."""

    transient: bool = False

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class TransientFetchError(FetchError):
    """Worth retrying later: timeouts, resets, 5xx, 429."""

    transient = True

    def __init__(
        self, message: str, *, url: str = "", status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, url=url, status=status)
        self.retry_after = retry_after


class PermanentFetchError(FetchError):
    """Retrying the same request will not help."""


class LeaseLostError(NotifierError):
    """Another instance owns this shipment now; the poll's results were not recorded."""
