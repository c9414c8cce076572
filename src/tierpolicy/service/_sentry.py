"""Error reporting to Sentry, when ``SENTRY_DSN`` is set (the ``sentry`` extra).

Sentry's logging integration turns every ``ERROR`` log record into a Sentry event, and
the service logs each unexpected exception (with its traceback) before answering the
500 problem, so that is what is reported, together with operational errors such as a
rate-limit store that fails. Sentry's default of collecting no personal data (request
headers, cookies, user ids) is kept, and no performance traces are sampled. Sentry's client is process-wide by design: the DSN
of the last application built wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._auth import AuthSetupError

if TYPE_CHECKING:
    from ._settings import Settings


def init_sentry(settings: Settings) -> bool:
    """Start reporting to ``settings.sentry_dsn``; return whether it was set.

    Raises:
        AuthSetupError: ``SENTRY_DSN`` is set but sentry-sdk is not installed, or the DSN
            is malformed (a bad setting, refused at startup).
    """
    if settings.sentry_dsn is None:
        return False
    try:
        import sentry_sdk  # noqa: PLC0415  an optional extra
        from sentry_sdk.utils import BadDsn  # noqa: PLC0415  as above
    except ImportError:
        msg = "SENTRY_DSN is set but sentry-sdk is not installed: pip install 'tierpolicy[sentry]'"
        raise AuthSetupError(msg) from None
    try:
        sentry_sdk.init(
            dsn=settings.sentry_dsn.get_secret_value(),
            traces_sample_rate=0.0,
            # The logging integration (a default one) is all this needs; the framework
            # integrations would patch Starlette for every application in the process.
            auto_enabling_integrations=False,
        )
    except BadDsn as exc:
        msg = f"SENTRY_DSN is not a valid DSN: {exc}"
        raise AuthSetupError(msg) from None
    return True
