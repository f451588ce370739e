"""Building a model with shapes only: the ``meta`` device, no weights, no initialisation cost."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


@contextlib.contextmanager
def _parameters_to_meta() -> Iterator[None]:
    """Every parameter and buffer moves to the meta device as it is registered, so initialisation
    (which runs after registration) costs nothing, while the builder's own tensors stay real."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self, name, tensor, persistent=True):
        register_buffer(self, name, tensor.to("meta") if tensor is not None else None, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


INIT_FUNCTIONS = ("normal_", "uniform_", "trunc_normal_", "kaiming_normal_", "kaiming_uniform_", "xavier_normal_",
                  "xavier_uniform_", "constant_", "zeros_", "ones_", "orthogonal_")
"""``torch.nn.init`` functions skipped while building on meta: they give meta tensors no values, yet their
meta kernels run through Python decompositions, about two thirds of a meta build (ConvNeXt, DenseNet, ...)."""


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    saved = {name: getattr(nn.init, name) for name in INIT_FUNCTIONS}
    for name in INIT_FUNCTIONS:
        setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def build_on_meta(build: Callable[[], M]) -> M:
    """``build()`` with every parameter and buffer on the meta device, ``torch.nn.init`` skipped.

    Most builders run directly under ``torch.device("meta")``; a few read tensor values while
    building (torchvision's RegNet computes its widths from tensors): those build with real
    temporaries, while each parameter and buffer is moved to meta as it is registered.
    """
    with _no_init():
        try:
            with torch.device("meta"):
                return build()
        except NotImplementedError:
            with _parameters_to_meta():
                return build().to("meta")


def is_on_meta(model: nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return bool(tensors) and all(t.device.type == "meta" for t in tensors)
