"""A small Starlette API behind `ratelimit.middleware.RateLimitMiddleware` (see README.md here)."""

from examples.app.app import AppConfig, create_app

__all__ = ["AppConfig", "create_app"]
