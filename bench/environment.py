"""The one record of where and how a number was measured: device, library versions, math modes.

Timing records, profiles, roofline peaks and report footnotes all take it from here, so a GPU
run names the GPU and a CPU run the CPU, with the same keys.

Two CPUs can share a name ("AMD EPYC" on two cloud machines) and differ in what decides convolution
speed: the vector extensions (one measured a 3x3-conv roof of 216 GFLOP/s, the other, with AVX-512,
504) and the core count. So a CPU is described, and its results folder named, by its model name, its
widest vector extension and its cores: ``cpu-amd-epyc-avx512-2-cores`` and ``cpu-amd-epyc-avx2-2-cores``
are two folders, never one.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from dataclasses import dataclass

import torch

VECTOR_FLAGS = {
    # /proc/cpuinfo flags that decide how fast conv kernels run, widest first (x86: "flags", aarch64: "Features")
    "x86_64": ("amx_tile", "avx512_bf16", "avx512f", "avx2", "fma"),
    "aarch64": ("sve2", "sve", "asimd"),
}
TIERS = (("amx_tile", "amx"), ("avx512f", "avx512"), ("avx2", "avx2"), ("sve2", "sve2"), ("sve", "sve"),
         ("asimd", "neon"))
"""The widest extension a CPU has names its tier, the part of the folder name that tells machines apart."""


@dataclass(frozen=True)
class CpuInfo:
    model: str  # the vendor's model name ("AMD EPYC 7B13"); on aarch64 without one, implementer and part
    features: tuple[str, ...]  # the VECTOR_FLAGS it has, widest first
    logical_cores: int
    physical_cores: int | None  # distinct (socket, core) pairs; None when /proc/cpuinfo does not say

    @property
    def tier(self) -> str:
        """'amx', 'avx512', 'avx2', 'sve', 'neon', or '' (none of them)."""
        return next((name for flag, name in TIERS if flag in self.features), "")

    def cores(self) -> str:
        if self.physical_cores and self.physical_cores != self.logical_cores:
            return f"{self.physical_cores} physical / {self.logical_cores} logical cores"
        return f"{self.logical_cores} cores" if self.physical_cores else f"{self.logical_cores} logical cores"


def parse_cpuinfo(text: str, machine: str | None = None, logical_cores: int | None = None) -> CpuInfo:
    """A CpuInfo from the text of /proc/cpuinfo (x86 or aarch64); ``logical_cores`` defaults to the processors
    it lists."""
    machine = machine or platform.machine()
    fields: dict[str, str] = {}
    processors, cores = 0, set()
    physical = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            continue
        if key == "processor":
            processors += 1
        fields.setdefault(key, value)  # the first processor's; every processor lists the same model and flags
        if key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    wanted = VECTOR_FLAGS["aarch64" if machine in ("aarch64", "arm64") else "x86_64"]
    model = fields.get("model name") or fields.get("cpu model") or ""
    if not model and "cpu implementer" in fields:
        model = f"{machine} CPU (implementer {fields['cpu implementer']}, part {fields.get('cpu part', '?')})"
    return CpuInfo(model=model or platform.processor() or machine,
                   features=tuple(f for f in wanted if f in flags),
                   logical_cores=logical_cores or processors or os.cpu_count() or 1,
                   physical_cores=len(cores) or None)


def cpu_info() -> CpuInfo:
    """This machine's CPU (logical cores: the ones this process may use, os.cpu_count())."""
    text = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            text = f.read()
    return parse_cpuinfo(text, logical_cores=os.cpu_count())


def cpu_name() -> str:
    return cpu_info().model


def cpu_description(info: CpuInfo) -> str:
    """'AMD EPYC (avx2, fma; 2 cores)'."""
    return f"{info.model} ({', '.join(info.features) or 'no AVX2/AVX-512/SVE/NEON'}; {info.cores()})"


def cpu_slug(info: CpuInfo) -> str:
    """'cpu-amd-epyc-avx512-2-cores': model, widest vector extension, logical cores."""
    return _slug(f"cpu {info.model} {info.tier} {info.logical_cores} cores")


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def device_description(device: str) -> str:
    """'NVIDIA H200' for a CUDA device; 'AMD EPYC (avx2, fma; 2 cores)' for the CPU."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_description(cpu_info())


def device_slug(device: str) -> str:
    """A folder name for a device's results: 'nvidia-h200', 'cpu-amd-epyc-avx2-2-cores'."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return _slug(torch.cuda.get_device_name(torch.device(device)))
    return cpu_slug(cpu_info())


def environment(device: str = "cpu") -> dict[str, object]:
    """Where and how: device name, the CPU's model, vector extensions and cores, torch/CUDA/cuDNN versions, TF32
    flags, matmul precision, threads. (The CPU fields describe the host on a GPU run too.)"""
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    cpu = cpu_info()
    return {
        "device": device,
        "device_name": device_description(device),
        "slug": device_slug(device),  # the folder its results go to
        "cpu_model": cpu.model,
        "cpu_features": " ".join(cpu.features),  # of VECTOR_FLAGS; a string, so flat rows stay flat
        "cpu_logical_cores": cpu.logical_cores,
        "cpu_physical_cores": cpu.physical_cores,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": str(torch.backends.cudnn.version()) if cuda else None,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
    }


def describe(env: dict[str, object]) -> str:
    """One line for a footnote: 'NVIDIA H200, torch 2.11, CUDA 12.8, cuDNN 91000, TF32 conv on'; on a CPU
    'AMD EPYC (avx2, fma; 2 cores), torch 2.14, 2 threads' (the vector extensions and cores tell CPUs apart)."""
    parts = [str(env["device_name"]), f"torch {env['torch']}"]
    if env.get("cuda"):
        parts += [f"CUDA {env['cuda']}", f"cuDNN {env['cudnn']}",
                  f"TF32 conv {'on' if env['tf32_cudnn'] else 'off'}, matmul {'on' if env['tf32_matmul'] else 'off'}"]
    else:
        parts.append(f"{env['threads']} threads")
    return ", ".join(parts)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """torch's intra-op thread count set to ``threads`` for the block (None: unchanged), then restored."""
    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(before)
