"""A test whose service (PostgreSQL, Redis, nginx, a browser) is missing: skipped, or failed when required."""

import os

import pytest

# Set by CI (.ci/run): a missing service is a failure, not a reason to skip.
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str, *, module: bool = False) -> None:
    """Skip the test (the whole module with `module`), or fail it when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)", pytrace=not module)
    pytest.skip(reason, allow_module_level=module)
