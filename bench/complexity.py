"""Parameters and arithmetic per variant and per decoder block, without running the model.

Counting conventions (every column says which one it holds):

``macs``          multiply-accumulates of convolutions and linear layers, bias excluded. One fused
                  multiply-add = 1. This is what fvcore calls a "flop" for these ops, and what the
                  paper calls FLOPs.
``fvcore_flops``  fvcore's default total: ``macs`` plus BatchNorm (2 per element at inference with
                  affine, 1 without), bilinear upsampling (4 per output element), nearest upsampling
                  (1), adaptive average pooling (1 per input element), LayerNorm/GroupNorm (5 per
                  element). fvcore reports max-/avg-pooling, additions and activations as
                  unsupported and leaves them out.
``paper_flops``   the convention that reproduces the paper's Tables 1 and 3: ``macs`` plus the
                  pooling window ops (k x k per output element; CRP's 5x5 max-pools are 25 per
                  element), see :func:`paper_convention` and reports/complexity.md.
``all_ops``       ``fvcore_flops`` plus what fvcore leaves out: max/avg pooling (one op per window
                  element and output element), element-wise additions, activations and conv
                  biases (one op per output element). Data movement (concatenation, slicing,
                  padding, views, eval-mode dropout) is free.

And one count of memory traffic, for the roofline:

``elements``      tensor elements each op reads and writes, counted once per op: every input
                  (weights included) and every output; views move nothing. Times the element size
                  it is a lower bound on the bytes moved (real kernels re-read; caches help), the
                  convention of NVIDIA's PyProf (``bytes = (inputs + weights + outputs) x size``).

How it is fast: the model is built on the ``meta`` device (no weights) and run once per input size
under a dispatch mode that records each aten op with its shapes; the handles below turn shapes
into counts. fvcore itself needs a real forward pass (its JIT trace does not run on meta tensors);
the tests check that ``fvcore_flops`` equals fvcore's real-tensor count op for op, and that
``macs`` equals half of :class:`torch.utils.flop_counter.FlopCounterMode` (which counts a
multiply-add as two and ignores everything but convolutions and matmuls).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from . import validation
from .errors import UsageTypeError
from .models import meta_model, variant_info
from .models.meta import is_on_meta

COLUMNS = ("macs", "fvcore_flops", "paper_flops", "all_ops")


def _numel(t) -> int:
    return math.prod(t.shape) if isinstance(t, torch.Tensor) else 0


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@dataclass
class OpCount:
    macs: int = 0
    fvcore: int = 0  # fvcore's own total for this op
    extra: int = 0  # what fvcore leaves out (-> all_ops)
    pool: int = 0  # pooling window ops, also part of ``extra`` (-> paper_flops)


Handle = Callable[[tuple, dict, object], OpCount]


def _conv(args, kwargs, out) -> OpCount:
    _x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    out_n = _numel(_first_tensor(out))
    macs = out_n * math.prod(w.shape[1:])  # out elements x (Cin/groups x kh x kw)
    return OpCount(macs=macs, fvcore=macs, extra=out_n if bias is not None else 0)


def _linear(args, kwargs, out) -> OpCount:
    x, w = args[0], args[1]
    macs = _numel(x) * w.shape[0]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    return OpCount(macs=macs, fvcore=macs, extra=_numel(out) if bias is not None else 0)


def _addmm(args, kwargs, out) -> OpCount:
    bias, a, b = args[:3]
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    return OpCount(macs=macs, fvcore=macs, extra=_numel(out))


def _mm(args, kwargs, out) -> OpCount:
    a, b = args[:2]
    macs = _numel(a) * b.shape[-1]
    return OpCount(macs=macs, fvcore=macs)


def _batch_norm(args, kwargs, out) -> OpCount:
    x, weight = args[0], args[1]
    training = args[5] if len(args) > 5 else kwargs.get("training", False)
    n = _numel(x)
    if training:
        return OpCount(fvcore=n * (5 if weight is not None else 4))
    return OpCount(fvcore=n * (2 if weight is not None else 1))


def _norm(args, kwargs, out) -> OpCount:  # layer_norm, group_norm: fvcore's rough 5 per element
    return OpCount(fvcore=_numel(args[0]) * 5)


def _per_output(scale: int, fvcore: bool) -> Handle:
    def handle(args, kwargs, out) -> OpCount:
        n = _numel(_first_tensor(out)) * scale
        return OpCount(fvcore=n) if fvcore else OpCount(extra=n)

    return handle


def _per_input(args, kwargs, out) -> OpCount:  # adaptive average pooling, as fvcore
    return OpCount(fvcore=_numel(args[0]))


def _pool(args, kwargs, out) -> OpCount:
    kernel = args[1] if len(args) > 1 else kwargs["kernel_size"]
    kernel = [kernel] * 2 if isinstance(kernel, int) else list(kernel)
    if len(kernel) == 1:
        kernel = kernel * 2
    ops = _numel(_first_tensor(out)) * math.prod(kernel)
    return OpCount(extra=ops, pool=ops)


_ELEMENTWISE = _per_output(1, fvcore=False)

HANDLES: dict[str, Handle] = {
    "conv2d": _conv,
    "convolution": _conv,
    "linear": _linear,
    "addmm": _addmm,
    "mm": _mm,
    "matmul": _mm,
    "bmm": _mm,
    "batch_norm": _batch_norm,
    "native_batch_norm": _batch_norm,
    "_native_batch_norm_legit_no_training": lambda a, k, o: _batch_norm((*a[:5], False), k, o),
    "layer_norm": _norm,
    "group_norm": _norm,
    "upsample_bilinear2d": _per_output(4, fvcore=True),
    "upsample_nearest2d": _per_output(1, fvcore=True),
    "adaptive_avg_pool2d": _per_input,
    "_adaptive_avg_pool2d": _per_input,
    "mean": _per_input,
    "max_pool2d": _pool,
    "max_pool2d_with_indices": _pool,
    "avg_pool2d": _pool,
    **{
        op: _ELEMENTWISE
        for op in (
            "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_",
            "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "gelu", "silu", "silu_",
            "sigmoid", "sigmoid_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_",
        )
    },
}
"""aten op (overload packet name) -> pure function (args, kwargs, output) -> OpCount."""

FREE_OPS = frozenset(
    {
        "cat", "slice", "pad", "constant_pad_nd", "empty", "view", "_unsafe_view", "reshape", "t", "transpose",
        "permute", "flatten", "dropout", "feature_dropout", "clone", "contiguous", "detach", "alias", "expand",
        "unsqueeze", "squeeze", "select", "split", "split_with_sizes", "chunk", "_to_copy", "to", "copy_",
        "stochastic_depth", "lift_fresh", "zeros", "ones", "new_empty", "empty_like", "new_zeros",
    }
)
"""Data movement: counted as zero, on purpose. Any op in neither table is reported as uncounted."""

VIEW_OPS = frozenset(
    {
        "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "flatten", "expand", "unsqueeze", "squeeze",
        "select", "split", "split_with_sizes", "chunk", "slice", "alias", "detach", "lift_fresh", "dropout",
        "feature_dropout", "empty", "new_empty", "empty_like", "contiguous",
    }
)
"""Ops that move no data (views, eval-mode dropout, allocation; ``contiguous`` of a contiguous tensor)."""


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    return []


def moved_elements(op: str, args: tuple, kwargs: dict, out) -> int:
    """Elements read and written by one op: each input tensor (weights too) and each output, once."""
    if op in VIEW_OPS:
        return 0
    return sum(_numel(t) for t in _tensors(list(args) + list(kwargs.values()))) + sum(_numel(t) for t in _tensors(out))


_SHAPE_PRESERVING = frozenset(
    {"batch_norm", "relu", "relu6", "hardtanh", "gelu", "silu", "sigmoid", "hardswish", "hardsigmoid", "dropout"}
)
_IN_PLACE = frozenset({"relu_", "hardtanh_", "silu_", "sigmoid_", "hardswish_", "hardsigmoid_", "add_", "mul_"})


def _like(x: torch.Tensor) -> torch.Tensor:
    """``empty_like(x)`` on meta: the same strides for a dense tensor, without empty_like's Python stride logic."""
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
    return torch.empty_like(x)


def _upsampled(op: str, x: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The output of ``upsample_*2d`` (both overloads: output size, or the ``.vec`` scale factors)."""
    size = args[1] if len(args) > 1 else kwargs.get("output_size")
    if size is None:
        at = 3 if op == "upsample_bilinear2d" else 2  # after align_corners, or straight after the size
        scales = args[at] if len(args) > at else kwargs.get("scale_factors")
        if not isinstance(scales, (list, tuple)) or len(scales) != 2:
            return None
        size = [math.floor(n * s) for n, s in zip(x.shape[-2:], scales, strict=True)]  # as ATen sizes them
    if x.dim() != 4 or len(size) != 2:
        return None
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.empty((*x.shape[:2], *size), dtype=x.dtype, device="meta",
                       memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _shape_only(op: str, args: tuple, kwargs: dict):
    """The output of a shape-preserving op (or an upsampling) on meta tensors, without running its (slow, Python)
    meta kernel; None where the real kernel must run."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.device.type != "meta":
        return None
    if op in _IN_PLACE:
        return x
    if op in _SHAPE_PRESERVING:
        return _like(x)
    if op in ("add", "sub", "mul") and isinstance(args[1], torch.Tensor) and args[1].shape == x.shape:
        return _like(x)
    if op in ("upsample_bilinear2d", "upsample_nearest2d"):
        return _upsampled(op, x, args, kwargs)
    return None


class _OpRecorder(TorchDispatchMode):
    """Records (module path, aten op, OpCount) for every op of a forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.names = {id(m): name for name, m in model.named_modules()}
        self.stack: list[str] = [""]
        self.rows: list[tuple[str, str, OpCount, int]] = []
        self.uncounted: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        op = func.overloadpacket.__name__
        out = _shape_only(op, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        handle = HANDLES.get(op)
        if handle is None and op not in FREE_OPS:
            self.uncounted[op] += 1
        count = handle(args, kwargs, out) if handle is not None else OpCount()
        elements = moved_elements(op, args, kwargs, out)
        if handle is not None or elements:
            self.rows.append((self.stack[-1], op, count, elements))
        return out

    def __enter__(self):
        def pre(module, inputs):
            self.stack.append(self.names.get(id(module), self.stack[-1]))

        def post(module, inputs, output):
            self.stack.pop()

        self._hooks = [
            nn.modules.module.register_module_forward_pre_hook(pre),
            nn.modules.module.register_module_forward_hook(post, always_call=True),
        ]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        return super().__exit__(*exc)


@dataclass
class OpTable:
    """Per-op counts of one forward pass: module path, op, and the four conventions."""

    rows: list[dict] = field(default_factory=list)
    uncounted: dict[str, int] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["module", "op", *COLUMNS, "elements"])


def paper_convention(c: OpCount) -> int:
    """The paper's FLOPs: MACs plus pooling window ops (k x k per output element).

    Of the conventions tried (see reports/complexity.md), this is the one that puts every ResNet
    model of Tables 1 and 3 within the paper's rounding; BatchNorm, additions, activations and
    upsampling all push some of them out of it.
    """
    return c.macs + c.pool


def count_ops(model: nn.Module, height: int, width: int, batch: int = 1) -> OpTable:
    """Count every op of ``model`` at ``batch x 3 x height x width`` on the meta device."""
    validation.integer("batch", batch, minimum=1)
    on_meta = model if is_on_meta(model) else _to_meta(model)
    recorder = _OpRecorder(on_meta)
    was_training = on_meta.training
    on_meta.eval()
    try:
        with recorder, torch.inference_mode():
            on_meta(torch.empty(batch, 3, height, width, device="meta"))
    finally:
        on_meta.train(was_training)
    rows = [
        {
            "module": module,
            "op": op,
            "macs": c.macs,
            "fvcore_flops": c.fvcore,
            "paper_flops": paper_convention(c),
            "all_ops": c.fvcore + c.extra,
            "elements": elements,
        }
        for module, op, c, elements in recorder.rows
    ]
    return OpTable(rows, dict(recorder.uncounted))


def _to_meta(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to("meta")


# --- blocks ------------------------------------------------------------------------------------

BLOCKS = ("backbone", "rcu", "crp", "fusion", "classifier")
"""Per-block breakdown: backbone; RCUs (before and after CRP); CRP; fusion = adaptation (dimred)
convs, fusion convs on both paths, upsampling, summation and activation; classifier."""


def block_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "backbone":
        return "backbone"
    if parts[:2] == ["decoder", "classifier"]:
        return "classifier"
    if len(parts) >= 3 and parts[0] == "decoder":
        if parts[2] in ("rcu_in", "rcu_out"):
            return "rcu"
        if parts[2] == "crp":
            return "crp"
    return "fusion"  # dimred, adapt, out_conv and the level's own upsample/sum/activation


def level_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "decoder" and parts[1].startswith("level") else ""


# --- tables ------------------------------------------------------------------------------------


@dataclass
class ComplexityRecord:
    variant: str
    height: int
    width: int
    batch: int
    num_classes: int
    params: int
    macs: int
    fvcore_flops: int
    paper_flops: int
    all_ops: int
    elements: int  # tensor elements read + written, once per op (x element size: bytes, a lower bound)
    uncounted_ops: str  # ops seen but counted by no handle ("" when none)


def complexity(
    variants: Sequence[str],
    sizes: Sequence[tuple[int, int]] = ((512, 512),),
    batch: int = 1,
    num_classes: int = 21,
) -> list[ComplexityRecord]:
    """One record per (variant, size): parameters, the four counting conventions, elements moved.

    Every argument is checked before anything is built (unknown variant, size under 32x32, batch or
    num_classes under 1: ValueError naming the argument).
    """
    variants = _check_variants(variants)
    sizes = validation.sizes("sizes", sizes)
    validation.integer("batch", batch, minimum=1, maximum=validation.MAX_BATCH)
    validation.integer("num_classes", num_classes, minimum=1, maximum=validation.MAX_MODEL_CLASSES)
    records = []
    for name in variants:
        model = meta_model(name, num_classes)
        params = sum(p.numel() for p in model.parameters())
        for h, w in sizes:
            table = count_ops(model, h, w, batch)
            totals = table.frame()[[*COLUMNS, "elements"]].sum()
            records.append(
                ComplexityRecord(
                    name, h, w, batch, num_classes, params, *(int(totals[c]) for c in (*COLUMNS, "elements")),
                    uncounted_ops=", ".join(f"{op} x{n}" for op, n in sorted(table.uncounted.items())),
                )
            )
    return records


def _check_variants(variants: Sequence[str] | str) -> list[str]:
    """One name or a non-empty list of names (a string is one name, never its letters), each registered."""
    variants = validation.names("variants", variants)
    for name in variants:
        variant_info(name)  # ValueError / TypeError naming the valid ones
    return variants


def complexity_frame(records: Iterable[ComplexityRecord]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in records])


def block_breakdown(
    variants: Sequence[str], height: int = 512, width: int = 512, num_classes: int = 21
) -> pd.DataFrame:
    """Parameters and counts per block (and per decoder level) for each variant."""
    variants = _check_variants(variants)
    validation.image_size("input", height, width)
    validation.integer("num_classes", num_classes, minimum=1, maximum=validation.MAX_MODEL_CLASSES)
    frames = []
    for name in variants:
        model = meta_model(name, num_classes)
        ops = count_ops(model, height, width).frame()
        ops["block"] = ops["module"].map(block_of)
        ops["level"] = ops["module"].map(level_of)
        by_block = ops.groupby(["block", "level"], as_index=False)[list(COLUMNS)].sum()
        params = Counter()
        for pname, p in model.named_parameters():
            module = pname.rsplit(".", 1)[0]
            params[(block_of(module), level_of(module))] += p.numel()
        keys = zip(by_block["block"], by_block["level"], strict=True)
        by_block["params"] = [params.get(key, 0) for key in keys]
        by_block.insert(0, "variant", name)
        by_block.insert(1, "height", height)
        by_block.insert(2, "width", width)
        frames.append(by_block)
    return pd.concat(frames, ignore_index=True)


def scaling(variants: Sequence[str], sides: Sequence[int] = (256, 512, 768, 1024, 1536, 2048)) -> pd.DataFrame:
    """MACs against square input side, for the quadratic-growth check and figure."""
    if isinstance(sides, (int, str)) or not isinstance(sides, Iterable):
        raise UsageTypeError(f"sides must be a list of square input sides such as [256, 512], got {sides!r}")
    return complexity_frame(complexity(variants, [(s, s) for s in sides]))
