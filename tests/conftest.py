"""Test-wide settings: no test reads or writes the user's real synthmr settings (bundle trust records)."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def isolated_synthmr_config(tmp_path_factory):
    """Point SYNTHMR_CONFIG_DIR (synthmr.bundle.trust) at a fresh folder for the session, subprocesses included."""
    saved = {name: os.environ.get(name) for name in ("SYNTHMR_CONFIG_DIR", "SYNTHMR_TRUST_BUNDLES")}
    os.environ["SYNTHMR_CONFIG_DIR"] = str(tmp_path_factory.mktemp("synthmr_config"))
    os.environ.pop("SYNTHMR_TRUST_BUNDLES", None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
