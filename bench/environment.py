"""The one record of where and how a number was measured: device, library versions, math modes.

Timing records, profiles, roofline peaks and report footnotes all take it from here, so a GPU
run names the GPU and a CPU run the CPU, with the same keys.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re

import torch


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_description(device: str) -> str:
    """'NVIDIA H200' for a CUDA device; 'Intel(R) Xeon(R) ... (2 logical cores)' for the CPU."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_name()} ({os.cpu_count()} logical cores)"


def device_slug(device: str) -> str:
    """A folder name for a device's results: 'nvidia-h200', 'cpu-intel-xeon-processor-2-cores'."""
    if device.startswith("cuda") and torch.cuda.is_available():
        text = torch.cuda.get_device_name(torch.device(device))
    else:
        text = f"cpu {cpu_name()} {os.cpu_count()} cores"
    text = re.sub(r"\((r|tm)\)", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def environment(device: str = "cpu") -> dict[str, object]:
    """Where and how: device name, torch/CUDA/cuDNN versions, TF32 flags, matmul precision, threads."""
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    return {
        "device": device,
        "device_name": device_description(device),
        "slug": device_slug(device),  # the folder its results go to
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
    """One line for a footnote: 'NVIDIA H200, torch 2.11, CUDA 12.8, cuDNN 91000, TF32 conv on'."""
    parts = [str(env["device_name"]), f"torch {env['torch']}"]
    if env.get("cuda"):
        parts += [f"CUDA {env['cuda']}", f"cuDNN {env['cudnn']}",
                  f"TF32 conv {'on' if env['tf32_cudnn'] else 'off'}, matmul {'on' if env['tf32_matmul'] else 'off'}"]
    else:
        parts.append(f"{env['threads']} threads")
    return ", ".join(parts)
