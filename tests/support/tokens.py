"""Access tokens as the server accepts them (HS256, `sub`, `exp`, `role: admin`), and ones it refuses."""

import math
import secrets
import string
import time

import jwt

TOKEN_LIFETIME = 3600  # seconds, unless a caller asks for another lifetime
OTHER_KEY = "another-secret-another-secret-xx"  # signs tokens the server must refuse


def random_secret(length: int = 48) -> str:
    """A random HS256 key of `length` letters and digits."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def mint_token(secret: str, user_id: str, *, admin: bool = False, expires_in: float = TOKEN_LIFETIME) -> str:
    """An HS256 access token for `user_id` signed with `secret`, with `role: admin` when `admin`.

    It expires `expires_in` seconds from now, rounded up to the next whole second
    (negative: it expired that long ago).
    """
    now = time.time()
    claims: dict = {"sub": user_id, "iat": int(now), "exp": math.ceil(now + expires_in)}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, secret, algorithm="HS256")


def token_claims(token: str) -> dict:
    """The claims of a token, read without checking its signature."""
    return jwt.decode(token, options={"verify_signature": False})


def bearer(token: str) -> dict[str, str]:
    """The `Authorization` header that carries `token`."""
    return {"Authorization": f"Bearer {token}"}


def forged_tokens(secret: str, user_id: str = "alice") -> dict[str, str]:
    """Tokens the server must refuse, by what is wrong with them; admin ones, so no route takes them."""
    now = int(time.time())
    claims = {"sub": user_id, "exp": now + 600, "role": "admin"}
    return {
        "garbage": "not.a.token",
        "expired": mint_token(secret, user_id, admin=True, expires_in=-10),
        "wrong key": mint_token(OTHER_KEY, user_id, admin=True),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "no exp": jwt.encode({"sub": user_id, "role": "admin"}, secret, algorithm="HS256"),
        "no sub": jwt.encode({"exp": now + 600, "role": "admin"}, secret, algorithm="HS256"),
        "empty sub": jwt.encode({**claims, "sub": ""}, secret, algorithm="HS256"),
    }
