"""The service's one error type: an HTTP status, a short code and a one-line message.

Every error the service answers has the body ``{"error": {"code": CODE, "message": TEXT}}``;
the codes are listed in ``docs/serving.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeError", "error_body"]


class ServeError(Exception):
    """A request the service refuses: ``status`` (4xx), ``code`` and a message naming the
    part of the request at fault and the fix."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
