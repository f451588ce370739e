"""Tap aliases are complete: every pair of taps that a real forward returns as the very same tensor is named
by ``tap_aliases()``, and nothing else is, for decoder specs that remove RCUs, CRP stages or dropout."""

from __future__ import annotations

import pytest
import torch

from bench import create_model

SPECS = [
    ("rf_lw:resnet18", {}),
    ("rf_lw:resnet18", {"crp_stages": 0}),
    ("rf_lw_rcu:resnet18", {"crp_stages": 0, "rcu_in": 0}),
    ("rf_lw_rcu:resnet18", {"rcu_out": 0}),
    ("rf:resnet18", {}),  # with dropout: in eval mode classifier_input is the last level's output
    ("rf:resnet18", {"dropout": 0.0, "rcu_in": 0, "rcu_out": 0, "crp_stages": 0}),
]


@pytest.mark.parametrize("name, changes", SPECS, ids=[f"{n}-{c}" for n, c in SPECS])
def test_aliases_are_exactly_the_shared_tensors(name, changes):
    narrow = {"channels": 8, "top_channels": 16, **changes}
    model = create_model(name, num_classes=3, decoder=narrow).eval()
    taps = [t for t in model.tap_names() if not t.startswith("backbone.")]
    with torch.no_grad():
        out = model.forward_taps(torch.randn(1, 3, 64, 64), taps)
    # the truth from the forward pass: the first tap (in forward order) holding each tensor object
    first: dict[int, str] = {}
    shared = {}
    for tap in taps:
        key = id(out[tap])
        if key in first:
            shared[tap] = first[key]
        else:
            first[key] = tap
    assert model.tap_aliases() == shared


def test_dropout_makes_classifier_input_its_own_tensor_in_train_mode():
    model = create_model("rf:resnet18", num_classes=3, decoder={"channels": 8, "top_channels": 16}).train()
    out = model.forward_taps(torch.randn(2, 3, 64, 64), ["level1.after_out_rcu", "classifier_input"])
    assert out["classifier_input"] is not out["level1.after_out_rcu"]
    assert "classifier_input" not in model.tap_aliases()
    assert model.eval().tap_aliases()["classifier_input"] == "level1.after_out_rcu"
