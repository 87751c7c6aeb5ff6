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
# Off, so that no answer is a 429 for the fuzzing's own request rate.
NO_RATE_LIMITS = {"RATE_LIMIT_USER": "", "RATE_LIMIT_ADMIN": "", "RATE_LIMIT_AUTH_FAILURES": ""}


@pytest.fixture(scope="module")
def fuzzed_server():
    """A real server (`python wsgi.py`) of this module's own, with rate limits off."""
    with running_live_server(NO_RATE_LIMITS) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzzed_server):
    """The server's OpenAPI document as schemathesis sees it: fixed seed, admin token, all checks.

    Every check is on but `positive_data_acceptance`: a cursor of the documented form
    (base64url) that names no position is refused with 400 by design, and the form is all
    a document can say of an opaque cursor.
    """
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "cache": {"enabled": False},
            "request-timeout": REQUEST_TIMEOUT,
            "auth": {"openapi": {"bearerAuth": {"bearer": fuzzed_server.token("fuzz-admin", admin=True)}}},
            "checks": {"positive_data_acceptance": {"enabled": False}},
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
