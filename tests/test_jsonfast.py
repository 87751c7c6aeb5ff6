"""The orjson-backed JSON used by Flask and Socket.IO stays a drop-in for the standard one."""

import json

import pytest

from app import jsonfast


@pytest.mark.parametrize(
    "value",
    [
        {"id": "3f0c", "userId": "émile ✓", "readAt": None, "n": [1, 2.5, True]},
        ["a", {"nested": {"deep": []}}],
        "plain",
    ],
)
def test_dumps_reads_back_like_the_standard_encoder(value):
    text = jsonfast.dumps(value, separators=(",", ":"))
    assert isinstance(text, str)
    assert json.loads(text) == value
    assert jsonfast.loads(text) == value


def test_what_orjson_refuses_falls_back_to_the_standard_encoder():
    # orjson only takes string keys; the standard encoder turns 1 into "1".
    assert jsonfast.dumps({1: "a"}) == '{"1":"a"}'


def test_invalid_text_raises_a_value_error_like_json_loads():
    with pytest.raises(ValueError):
        jsonfast.loads('{"userIds": [')


def test_flask_answers_keep_the_contract_field_order(app):
    with app.app_context():
        body = app.json.dumps({"id": "x", "userId": "u", "message": "m"})
    assert body == '{"id":"x","userId":"u","message":"m"}'


def test_flask_debug_indentation_still_works(app):
    with app.app_context():
        assert app.json.dumps({"a": 1}, indent=2) == '{\n  "a": 1\n}'
