"""Corrections to Flask-Limiter (4.1.1): an endpoint's limits resolved once while they are fixed
strings, and no rate-limit state made and reset by requests that never used it."""

import itertools

from flask import Flask
from flask_limiter import Limiter
from flask_limiter._compat import request_context
from flask_limiter._manager import LimitManager

PACKAGE = "flask-limiter"
WRITTEN_FOR = "4.1.1"

STATE_ONLY_WHEN_USED = "flask_limiter: request state reset only by requests that used it"
RESOLVED_ONCE = "flask_limiter: an endpoint's fixed limits resolved once"
_STATE = "_limiter_request_context"  # where `Limiter.context` keeps a request's state
# LimitManager's methods that change what `resolve_limits` finds.
_CHANGES = (
    "set_application_limits",
    "set_default_limits",
    "add_decorated_limit",
    "add_blueprint_limit",
    "add_route_exemption",
    "add_blueprint_exemption",
    "add_endpoint_hint",
)


def apply(app: Flask, limiter: Limiter) -> None:
    """Install both corrections on `limiter` (of `app`)."""
    resolve_once(limiter.limit_manager)
    release_only_when_used(app, limiter)


def in_effect(app: Flask, limiter: Limiter) -> list[str]:
    """The names of this module's corrections in effect for `app` and its `limiter`."""
    found = [RESOLVED_ONCE] if getattr(limiter.limit_manager.resolve_limits, "once", False) else []
    if any(getattr(f, "only_when_used", False) for f in app.teardown_request_funcs.get(None, [])):
        found.append(STATE_ONLY_WHEN_USED)
    return found


def resolve_once(manager: LimitManager) -> None:
    """Make `manager` resolve the limits of each endpoint once, as long as every limit is a fixed string.

    Upstream limitation: each request resolves its endpoint's limits again: it walks the
    blueprint's limits, parses each limit string (`Limit.__iter__`) and builds new
    `RuntimeLimit`s from them, 5 % of a POST's CPU. What comes out depends only on the
    manager's registries and, for a limit given as a callable, on that callable: while
    every limit is a string, the answer for the same arguments is the same. It is kept per
    arguments and forgotten whenever a limit, an exemption or a hint is added
    (`_CHANGES`); a callable limit anywhere turns the keeping off. The upstream fix would
    cache the parsed limits in `Limit`. The lists handed out are copies.
    """
    if getattr(manager.resolve_limits, "once", False):
        return
    resolve = manager.resolve_limits
    kept: dict[tuple, tuple[list, ...]] = {}
    fixed = [None]  # whether every limit is a string: None until checked

    def resolve_limits(
        app, endpoint=None, blueprint=None, callable_name=None, in_middleware=False, marked_for_limiting=False
    ):
        key = (id(app), endpoint, blueprint, callable_name, in_middleware, marked_for_limiting)
        found = kept.get(key)
        if found is None:
            found = resolve(app, endpoint, blueprint, callable_name, in_middleware, marked_for_limiting)
            if fixed[0] is None:
                fixed[0] = _all_fixed(manager)
            if fixed[0]:
                kept[key] = found
        return tuple(list(limits) for limits in found)

    def forgetting(change):
        def changed(*args, **kwargs):
            try:
                return change(*args, **kwargs)
            finally:
                kept.clear()
                fixed[0] = None

        return changed

    for name in _CHANGES:
        setattr(manager, name, forgetting(getattr(manager, name)))
    resolve_limits.once = True
    manager.resolve_limits = resolve_limits


def _all_fixed(manager: LimitManager) -> bool:
    """Whether every limit the manager holds is given as a string, not a callable."""
    groups = itertools.chain(
        manager._application_limits,
        manager._default_limits,
        *manager._decorated_limits.values(),
        *manager._blueprint_limits.values(),
    )
    return not any(callable(group.limit_provider) for group in groups)


def release_only_when_used(app: Flask, limiter: Limiter) -> None:
    """Make `limiter`'s teardown leave alone a request context that holds no rate-limit state.

    Upstream limitation: the teardown (`Limiter.__release_context`) reads `Limiter.context`,
    which creates the request's state (a dict and a `LimiterContext`) when there is none, to
    reset it at once. Every Socket.IO handler runs in a request context of its own that no
    HTTP limit reads, so each connect, event and disconnect paid for it: 2.3 % of a connect's
    busy samples. The upstream fix would test for the state before resetting it, as here.
    """
    funcs = app.teardown_request_funcs.get(None, [])
    original = Limiter._Limiter__release_context
    for position, func in enumerate(funcs):
        if getattr(func, "__func__", None) is original and func.__self__ is limiter:
            funcs[position] = _release_when_used(func)


def _release_when_used(release):
    def release_when_used(exc: BaseException | None = None) -> None:
        if hasattr(request_context(), _STATE):
            release(exc)

    release_when_used.only_when_used = True
    return release_when_used
