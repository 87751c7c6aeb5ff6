"""Start-up refuses library versions the corrections of app/realtime/patches/ were not written for."""

import pytest

from app import create_app
from app.realtime import patches
from app.realtime.patches import engineio
from config import TestingConfig


def test_a_library_version_other_than_the_one_corrected_refuses_to_start(monkeypatch, tmp_path):
    monkeypatch.setattr(engineio, "WRITTEN_FOR", "4.14.0")
    with pytest.raises(RuntimeError) as refused:
        create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}")
    message = str(refused.value)
    assert "will not run on python-engineio 4.15.1" in message
    assert "internals of python-engineio 4.14.0" in message


def test_every_corrected_library_is_the_version_its_corrections_name():
    patches.check_versions()
