"""Isolation: every test trains into its own network cache (no test reuses a network another test trained), and
names a test registers (``register_variant``) are gone after it."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_network_cache(tmp_path_factory, monkeypatch):
    import analysis.networks.train as train

    monkeypatch.setattr(train, "CACHE", tmp_path_factory.mktemp("networks"))


@pytest.fixture(autouse=True)
def _registry_restored():
    from bench.models import registry

    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)
