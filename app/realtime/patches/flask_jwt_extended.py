"""Corrections to Flask-JWT-Extended (4.7.4): a token decoded once per verification, verified
tokens remembered until they expire, and a verified token's header parsed once."""

import time

from flask import current_app
from flask_jwt_extended import JWTManager, jwt_manager, view_decorators
from flask_jwt_extended.default_callbacks import default_decode_key_callback

PACKAGE = "flask-jwt-extended"
WRITTEN_FOR = "4.7.4"

SINGLE_DECODE = "flask_jwt_extended: a token decoded once per verification"
TOKEN_CACHE = "flask_jwt_extended: verified tokens remembered until exp"
HEADER_ONCE = "flask_jwt_extended: a verified token's header parsed once"
MAX_ENTRIES = 10_000
clock = time.time


def apply(jwt: JWTManager) -> None:
    """Make `jwt` verify a token in one decode, and remember the tokens it verified until they expire.

    It wraps the manager's private `_decode_jwt_from_config`, through which every
    verification goes.

    - One decode: the library decodes a token three times (its claims and its header
      unverified, for a key callback, then verified), a quarter of a socket connect's own
      work. With the default key callback the key depends on neither, so the verified
      decode runs alone, with the arguments the library would give it. A token it refuses
      goes through the library's own path, which raises what it always raised (an expired
      token's error carries its header and claims).
    - Remembered: steady traffic shows the same token again and again (a sending service's
      admin token, a user's token on every call and reconnect). Only successful
      verifications are kept, per app (so per secret), and a kept token stops counting at
      its `exp`: everything else a verification checks cannot change with time.
    """
    original = jwt._decode_jwt_from_config
    if getattr(original, "remembers", False):
        return
    once = _decoding_once(jwt, original)

    def decode(encoded_token: str, csrf_value=None, allow_expired: bool = False):
        if csrf_value is not None or allow_expired:
            return once(encoded_token, csrf_value, allow_expired)
        verified = current_app.extensions.setdefault("verified_tokens", {})
        entry = verified.get(encoded_token)
        if entry is not None and clock() < entry[0]:
            return dict(entry[1])
        claims = once(encoded_token)
        if isinstance(claims.get("exp"), int | float):
            if len(verified) >= MAX_ENTRIES:
                del verified[next(iter(verified))]
            verified[encoded_token] = (claims["exp"], dict(claims))
        return claims

    decode.remembers = True
    jwt._decode_jwt_from_config = decode
    headers_parsed_once()


def headers_parsed_once() -> None:
    """Make a request's verification parse each token's header once, not once per request.

    Upstream limitation: after a token is verified (which `apply` remembers), the library
    parses its header again (`get_unverified_jwt_headers`, base64 and JSON) to keep it for
    `get_jwt_header()`: 2.6 % of a POST's CPU, on every request with the same token. The
    header is a function of the token's text alone, so it is kept by text (at most
    MAX_ENTRIES tokens, the oldest forgotten first); each caller gets a copy. Only this
    call site, which runs after the token was verified, is replaced.
    """
    parse = view_decorators.get_unverified_jwt_headers
    if getattr(parse, "remembers", False):
        return
    kept: dict[str, dict] = {}

    def get_unverified_jwt_headers(encoded_token: str) -> dict:
        header = kept.get(encoded_token)
        if header is None:
            header = parse(encoded_token)
            if len(kept) >= MAX_ENTRIES:
                del kept[next(iter(kept))]
            kept[encoded_token] = header
        return dict(header)

    get_unverified_jwt_headers.remembers = True
    view_decorators.get_unverified_jwt_headers = get_unverified_jwt_headers


def _decoding_once(jwt: JWTManager, original):
    def decode_once(encoded_token: str, csrf_value=None, allow_expired: bool = False) -> dict:
        if jwt._decode_key_callback is not default_decode_key_callback:  # a key chosen per token
            return original(encoded_token, csrf_value, allow_expired)
        config = jwt_manager.config
        try:
            return jwt_manager._decode_jwt(
                algorithms=config.decode_algorithms,
                audience=config.decode_audience,
                csrf_value=csrf_value,
                encoded_token=encoded_token,
                identity_claim_key=config.identity_claim_key,
                issuer=config.decode_issuer,
                leeway=config.leeway,
                secret=config.decode_key,
                verify_aud=config.decode_audience is not None,
                verify_sub=config.verify_sub,
                allow_expired=allow_expired,
            )
        except Exception:  # noqa: BLE001  (refused: as the library refuses it)
            return original(encoded_token, csrf_value, allow_expired)

    return decode_once


def in_effect(jwt: JWTManager) -> list[str]:
    """The names of this module's corrections in effect for `jwt`."""
    found = [SINGLE_DECODE, TOKEN_CACHE] if getattr(jwt._decode_jwt_from_config, "remembers", False) else []
    if getattr(view_decorators.get_unverified_jwt_headers, "remembers", False):
        found.append(HEADER_ONCE)
    return found
