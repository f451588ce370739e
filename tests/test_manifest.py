"""reports/manifest.json merges runs: the timing section is kept once per device, so a run on one device never
replaces another device's section; other sections keep their last run; a failed rerun keeps the previous
content with its error. The section builders are cheap fakes; the merge and the front page are real."""

from __future__ import annotations

import json

import pytest

import analysis.report as report
from analysis.report.files import ScoreRow, Section

SLUGS = {"cuda": "nvidia-test-gpu", "cpu": "cpu-test-8-cores"}


@pytest.fixture
def fake_sections(monkeypatch):
    """Sections that say which device and which run made them."""
    state = {"device": "cpu", "run": 0, "fail": False}

    def timing(out, timings_done=None):  # a timed section: told when its timings are over
        if state["fail"]:
            raise RuntimeError("out of memory (injected)")
        device = state["device"]
        row = ScoreRow("Table 2 (runtimes, RF/LW)", "2.77", f"ratio on {device}", device, "inconclusive", "why", "rule")
        return Section(f"Timing on {device}", [], f"{device} words, run {state['run']}", "settings", [row],
                       f"timing/{SLUGS[device]}")

    def complexity(out):
        return Section("Complexity", [], f"counts, run {state['run']} on {state['device']}", "", [], "complexity")

    monkeypatch.setitem(report.SECTIONS, "timing", timing)
    monkeypatch.setitem(report.SECTIONS, "complexity", complexity)
    monkeypatch.setattr(report, "device_slug", lambda device: SLUGS[device])
    monkeypatch.setattr(report, "environment", lambda device: {"device": device, "device_name": f"{device} name"})

    def run(sections, out, device, fail=False):
        state.update(device=device, run=state["run"] + 1, fail=fail)
        status = report.run(sections, out=out, device=device)
        return status, json.loads((out / "manifest.json").read_text())

    return run


def test_two_devices_keep_two_timing_sections(tmp_path, fake_sections):
    _, manifest = fake_sections(["timing"], tmp_path, "cuda")
    gpu = manifest["timing/nvidia-test-gpu"]
    _, manifest = fake_sections(["timing"], tmp_path, "cpu")
    assert set(manifest) == {"timing/nvidia-test-gpu", "timing/cpu-test-8-cores"}
    assert manifest["timing/nvidia-test-gpu"] == gpu  # the CPU run left the GPU section as it was
    assert manifest["timing/cpu-test-8-cores"]["text"] == "cpu words, run 2"
    assert manifest["timing/cpu-test-8-cores"]["scores"][0]["ours"] == "ratio on cpu"
    page = (tmp_path / "README.md").read_text()
    assert "Timing on cuda" in page and "Timing on cpu" in page  # both sections linked
    assert page.count("| Table 2 (runtimes, RF/LW) |") == 1 and "ratio on cpu" in page  # one row: the latest


def test_a_rerun_replaces_only_its_own_devices_section(tmp_path, fake_sections):
    fake_sections(["timing"], tmp_path, "cuda")
    _, manifest = fake_sections(["timing"], tmp_path, "cpu")
    cpu = manifest["timing/cpu-test-8-cores"]
    _, manifest = fake_sections(["timing"], tmp_path, "cuda")
    assert manifest["timing/nvidia-test-gpu"]["text"] == "cuda words, run 3"
    assert manifest["timing/cpu-test-8-cores"] == cpu


def test_a_failed_rerun_keeps_the_previous_section_with_its_error(tmp_path, fake_sections):
    fake_sections(["timing"], tmp_path, "cuda")
    _, before = fake_sections(["timing"], tmp_path, "cpu")
    status, after = fake_sections(["timing"], tmp_path, "cpu", fail=True)
    assert status == {"timing": "RuntimeError: out of memory (injected)"}
    cpu = after["timing/cpu-test-8-cores"]
    assert cpu["text"] == "cpu words, run 2" and cpu["error"] == "RuntimeError: out of memory (injected)"
    assert after["timing/nvidia-test-gpu"] == before["timing/nvidia-test-gpu"]
    assert "failed on its last run" in (tmp_path / "README.md").read_text()


def test_other_sections_are_one_entry_whatever_the_device(tmp_path, fake_sections):
    fake_sections(["complexity", "timing"], tmp_path, "cuda")
    _, manifest = fake_sections(["complexity"], tmp_path, "cpu")
    assert manifest["complexity"]["text"] == "counts, run 2 on cpu"
    assert list(manifest) == ["complexity", "timing/nvidia-test-gpu"]  # the sections' order, then by key
