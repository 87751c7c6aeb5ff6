"""Schemathesis against the real server: requests generated from its own /openapi.json.

Every documented operation is called with data the document allows and data it
refuses (and with methods it does not list), as an admin; every answer must be what
the document says: no 5xx, a documented status, content type, body and headers, a
405 with `Allow`, a 401 without the token. Deterministic (fixed seed, derandomized)
and bounded (MAX_EXAMPLES per operation), so that a failure is a real regression that
reruns the same way.
"""

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from tests.support.live_server import running_live_server

SEED = 20261201
MAX_EXAMPLES = 300  # per operation, in the fuzzing phase
REQUEST_TIMEOUT = 10  # seconds


@pytest.fixture(scope="module")
def fuzzed_server():
    """A real server (`python wsgi.py`) of this module's own, on default settings but one.

    The failed-authentication limit is off: the fuzzer sends hundreds of invalid tokens from
    one address, and checks that each is answered 401, where that limit answers 429 (as it
    should: tests/e2e/test_hardening.py). The per-user and per-admin limits stay on.
    """
    with running_live_server({"RATE_LIMIT_AUTH_FAILURES": ""}) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzzed_server):
    """The server's OpenAPI document as schemathesis sees it: fixed seed, admin token, every check.

    `positive_data_acceptance` included: whatever the document allows (a cursor of the
    documented form, too) must not be refused. Its one allowed refusal is 422: a generated
    Idempotency-Key used again with another body (`idempotency_key_reused`), as documented.
    """
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "cache": {"enabled": False},
            "request-timeout": REQUEST_TIMEOUT,
            "auth": {"openapi": {"bearerAuth": {"bearer": fuzzed_server.token("fuzz-admin", admin=True)}}},
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]
                }
            },
        }
    )
    return schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json", config=config)


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request):
    """Give the test item the `_nodeid` attribute schemathesis 4.32 reads (and renames per
    operation, for its reports) when it loads a schema from a fixture: pytest 9.2 keeps
    the id elsewhere."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_operation_answers_as_documented(case):
    case.call_and_validate()
