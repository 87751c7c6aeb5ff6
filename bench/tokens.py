"""Access tokens signed by the bench itself (HS256, `sub`/`exp`, `role` for the admin)."""

import secrets
import string
import time

import jwt

TOKEN_LIFETIME_SECONDS = 4 * 3600


def random_secret(length: int = 48) -> str:
    """A random HS256 key of `length` letters and digits."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def make_token(secret: str, user_id: str, admin: bool = False) -> str:
    """A token for `user_id`, valid for a few hours; with `role: admin` when `admin`."""
    claims: dict = {"sub": user_id, "exp": int(time.time()) + TOKEN_LIFETIME_SECONDS}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, secret, algorithm="HS256")
