"""Correction to Flask-JWT-Extended (4.7.4): verified tokens are remembered until they expire."""

import time

from flask import current_app
from flask_jwt_extended import JWTManager

PACKAGE = "flask-jwt-extended"
WRITTEN_FOR = "4.7.4"

TOKEN_CACHE = "flask_jwt_extended: verified tokens remembered until exp"
MAX_ENTRIES = 10_000
clock = time.time


def apply(jwt: JWTManager) -> None:
    """Make `jwt` remember the tokens it verified, until they expire.

    Steady traffic shows the same token again and again (a sending service's admin token,
    a user's token on every call and reconnect), and verifying one decodes it three times.
    Only successful verifications are kept, per app (so per secret), and a kept token
    stops counting at its `exp`: everything else a verification checks cannot change with
    time. It wraps the manager's private `_decode_jwt_from_config`, through which every
    verification goes.
    """
    original = jwt._decode_jwt_from_config
    if getattr(original, "remembers", False):
        return

    def decode(encoded_token: str, csrf_value=None, allow_expired: bool = False):
        if csrf_value is not None or allow_expired:
            return original(encoded_token, csrf_value, allow_expired)
        verified = current_app.extensions.setdefault("verified_tokens", {})
        entry = verified.get(encoded_token)
        if entry is not None and clock() < entry[0]:
            return dict(entry[1])
        claims = original(encoded_token)
        if isinstance(claims.get("exp"), int | float):
            if len(verified) >= MAX_ENTRIES:
                del verified[next(iter(verified))]
            verified[encoded_token] = (claims["exp"], dict(claims))
        return claims

    decode.remembers = True
    jwt._decode_jwt_from_config = decode


def in_effect(jwt: JWTManager) -> list[str]:
    """The names of this module's corrections in effect for `jwt`."""
    return [TOKEN_CACHE] if getattr(jwt._decode_jwt_from_config, "remembers", False) else []
