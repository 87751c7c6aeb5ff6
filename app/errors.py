"""One JSON error envelope for every error: HTTP, validation, domain and JWT."""

import logging

from flask import Flask, current_app, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from app.extensions import db

log = logging.getLogger(__name__)

REALM = "notifications"


class DomainError(Exception):
    """An error the service layer raises; mapped to an HTTP status here."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class TooManySocketsError(DomainError):
    """The user already has as many connections as one user may."""

    status = 429
    code = "too_many_connections"


class NotFoundError(DomainError):
    """The thing does not exist, or belongs to someone else."""

    status = 404
    code = "not_found"


def _string_keys(details):
    """marshmallow's messages with every key a string: a list's item errors are keyed by index,
    and a list with both item errors and its own (`_schema`) would not serialize."""
    if isinstance(details, dict):
        return {str(key): _string_keys(value) for key, value in details.items()}
    return details


def error_response(status: int, code: str, message: str, details=None, headers=None):
    """Build the `{"error", "message"[, "details"]}` response (with `headers`, when given).

    Every 401 gets a `WWW-Authenticate` challenge (`bearer_challenge()` unless `headers`
    has one), as RFC 9110 requires.
    """
    body = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify(body)
    response.headers.extend(headers or ())
    if status == 401 and "WWW-Authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = bearer_challenge()
    return response, status


def bearer_challenge(error: str | None = None) -> str:
    """The `WWW-Authenticate` value of a 401 (RFC 6750, section 3).

    Without an error code when the request carried no usable token; with
    `error="invalid_token"` when it carried one that is not acceptable.
    """
    challenge = f'Bearer realm="{REALM}"'
    return f'{challenge}, error="{error}"' if error else challenge


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def register_error_handlers(app: Flask) -> None:
    """Route every exception a request can raise to the JSON envelope."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # The exception's own headers say things the client needs (405 `Allow`, 429
        # `Retry-After`, 401 `WWW-Authenticate`); only its HTML Content-Type goes.
        headers = [(name, value) for name, value in exc.get_headers() if name.lower() != "content-type"]
        code = _HTTP_CODES.get(exc.code, "http_error")
        return error_response(exc.code, code, exc.description or exc.name, headers=headers)

    @app.errorhandler(ValidationError)
    def validation_error(exc: ValidationError):
        return error_response(
            400, "validation_error", "The request is not valid.", _string_keys(exc.messages)
        )

    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        db.session.rollback()
        log.exception("unhandled error")
        message = repr(exc) if current_app.debug else "An unexpected error occurred."
        return error_response(500, "internal_error", message)
