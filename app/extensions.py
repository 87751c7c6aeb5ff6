"""Extension instances, created once and bound to an app by the factory."""

import time

from flask import current_app
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of every model."""


class CachingJWTManager(JWTManager):
    """A JWTManager that remembers the tokens it verified, until they expire.

    Steady traffic shows the same token again and again (a sending service's admin
    token, a user's token on every call and reconnect), and verifying one decodes it
    three times (bench/README.md, "Measurements behind the code"). Only successful
    verifications are kept, per app (so per secret), and a kept token stops counting at its `exp`:
    everything else a verification checks cannot change with time.
    """

    max_entries = 10_000
    clock = staticmethod(time.time)

    def _decode_jwt_from_config(self, encoded_token: str, csrf_value=None, allow_expired: bool = False):
        if csrf_value is not None or allow_expired:
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        verified = current_app.extensions.setdefault("verified_tokens", {})
        entry = verified.get(encoded_token)
        if entry is not None and self.clock() < entry[0]:
            return dict(entry[1])
        claims = super()._decode_jwt_from_config(encoded_token)
        if isinstance(claims.get("exp"), int | float):
            if len(verified) >= self.max_entries:
                del verified[next(iter(verified))]
            verified[encoded_token] = (claims["exp"], dict(claims))
        return claims


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
jwt = CachingJWTManager()
socketio = SocketIO()
