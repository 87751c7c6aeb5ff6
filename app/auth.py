"""Access tokens: from a token to the user it speaks for, for HTTP and Socket.IO alike."""

from dataclasses import dataclass
from datetime import timedelta
from functools import wraps

from flask import Flask
from flask_jwt_extended import create_access_token, decode_token, get_jwt, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError

from app.errors import DomainError, bearer_challenge, error_response
from app.extensions import jwt
from app.schemas import MAX_USER_ID_LENGTH

ADMIN_ROLE = "admin"
ACCESS_TYPE = "access"


class AuthError(Exception):
    """A token was missing or not acceptable."""


class ForbiddenError(DomainError):
    """A valid token without the rights the route needs."""

    status = 403
    code = "forbidden"


@dataclass(frozen=True)
class Identity:
    """Who a verified token speaks for."""

    user_id: str
    is_admin: bool
    expires_at: float  # the token's `exp`, a Unix time


def _claims_acceptable(claims: dict) -> bool:
    """Beyond the signature: an access token with an `exp` and a usable user id as `sub`.

    The `sub` is a user id as the admin route takes them: 1 to MAX_USER_ID_LENGTH
    characters, no NUL (which PostgreSQL cannot store in text). Refresh tokens
    (`"type": "refresh"`) are not access tokens; tokens without a `type` (an external
    identity provider's) are.
    """
    sub = claims.get("sub")
    return (
        isinstance(sub, str)
        and 0 < len(sub) <= MAX_USER_ID_LENGTH
        and "\x00" not in sub
        and "exp" in claims
        and claims.get("type", ACCESS_TYPE) == ACCESS_TYPE
    )


def init_jwt(app: Flask) -> None:
    """All of Flask-JWT-Extended's set-up: the app, the claim checks, the error answers."""
    jwt.init_app(app)
    # REST routes apply the same claim checks as Socket.IO connections.
    jwt.token_verification_loader(lambda _header, claims: _claims_acceptable(claims))
    _register_error_loaders()


def _register_error_loaders() -> None:
    """Give Flask-JWT-Extended's failures the same envelope (its defaults differ)."""

    def no_token(message: str):
        return error_response(401, "unauthorized", message)

    def invalid_token(message: str):
        challenge = {"WWW-Authenticate": bearer_challenge("invalid_token")}
        return error_response(401, "unauthorized", message, headers=challenge)

    jwt.unauthorized_loader(lambda reason: no_token(f"Missing or malformed token: {reason}"))
    jwt.invalid_token_loader(lambda reason: invalid_token(f"Invalid token: {reason}"))
    jwt.expired_token_loader(lambda _header, _data: invalid_token("The token has expired."))
    jwt.token_verification_failed_loader(
        lambda _header, _data: invalid_token("The token is not an access token with a valid sub and exp.")
    )
    jwt.revoked_token_loader(lambda _header, _data: invalid_token("The token has been revoked."))
    jwt.needs_fresh_token_loader(lambda _header, _data: invalid_token("A fresh token is required."))
    jwt.user_lookup_error_loader(lambda _header, _data: invalid_token("Unknown user."))


def _identity(claims: dict) -> Identity:
    return Identity(
        user_id=claims["sub"], is_admin=claims.get("role") == ADMIN_ROLE, expires_at=float(claims["exp"])
    )


def identity_from_token(token: str) -> Identity:
    """Verify a raw token (signature, HS256 only, expiry, claims) or raise AuthError."""
    try:
        claims = decode_token(token)
    except (PyJWTError, JWTExtendedException) as exc:
        raise AuthError(str(exc) or type(exc).__name__) from exc
    if not _claims_acceptable(claims):
        raise AuthError("the token is not an access token with a valid sub and exp")
    return _identity(claims)


def bearer_token(header_value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header_value:
        return None
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def socket_identity(authorization: str | None, auth: object) -> Identity:
    """The user of a Socket.IO connection: `Authorization` header, else `auth={"token": ...}`."""
    token = bearer_token(authorization)
    if token is None and isinstance(auth, dict) and isinstance(auth.get("token"), str):
        token = auth["token"]
    if not token:
        raise AuthError("no token: send `Authorization: Bearer <token>` or auth={token}")
    return identity_from_token(token)


def current_identity() -> Identity:
    """The verified identity of the current HTTP request (after `user_required`)."""
    return _identity(get_jwt())


def user_required(view):
    """Require a valid access token on an HTTP route (401 otherwise)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        verify_jwt_in_request()
        return view(*args, **kwargs)

    return wrapper


def admin_required(view):
    """Require a valid token whose `role` claim is "admin" (401 / 403 otherwise)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        verify_jwt_in_request()
        if not current_identity().is_admin:
            raise ForbiddenError("This route needs an admin token.")
        return view(*args, **kwargs)

    return wrapper


def create_token(user_id: str, admin: bool = False, expires_in: int | None = None) -> str:
    """Sign an access token for `user_id` (claim `role: "admin"` when `admin`)."""
    claims = {"role": ADMIN_ROLE} if admin else {}
    lifetime = timedelta(seconds=expires_in) if expires_in else None  # None: JWT_ACCESS_TOKEN_EXPIRES
    return create_access_token(identity=user_id, additional_claims=claims, expires_delta=lifetime)
