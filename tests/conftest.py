"""Every test trains into its own network cache: no test reuses a network another test trained."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_network_cache(tmp_path_factory, monkeypatch):
    import analysis.networks.train as train

    monkeypatch.setattr(train, "CACHE", tmp_path_factory.mktemp("networks"))
