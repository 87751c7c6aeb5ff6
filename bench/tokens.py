"""Access tokens of the bench: the tests' minter (tests/support/tokens.py), valid for a few hours."""

from tests.support.tokens import mint_token

TOKEN_LIFETIME_SECONDS = 4 * 3600


def make_token(secret: str, user_id: str, admin: bool = False) -> str:
    """A token for `user_id`, valid for a few hours; with `role: admin` when `admin`."""
    return mint_token(secret, user_id, admin=admin, expires_in=TOKEN_LIFETIME_SECONDS)
