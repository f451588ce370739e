"""The embedded default dataset: generated scenes in the VOC layout, where an object's class needs its context.

Each image is a ground split by a straight edge into two regions (or, in some images, one region), each region
covered by one of two textures of the same grey levels, contrast and noise: **stripes** or **dots**. Objects are
circles, squares and triangles (squares and triangles at random rotations) in saturated or pale colours drawn from
one distribution for every class. An object's class is its shape *and the texture of the region under its centre*
("circle on stripes" and "circle on dots" are two classes): the same object is one class or another by its
surroundings, which a pixel's own neighbourhood does not show but pooling over a wide window does (the context that
CRP's chained pooling is claimed to gather, Section 3.3). Three more things keep the task off its ceiling:

- **occlusion**: an object may overlap earlier ones and hide part of them (each keeps at least half its area);
- **clutter**: rings and crosses in the objects' colours, labelled background (a shape, not a colour, says what is
  an object);
- **texture**: faint stripes and noise on every object; pale objects stand out from the ground less.

Six object classes plus background; object boundaries are marked 255 (ignored), as in VOC. An object whose centre
lies near the regions' edge is ambiguous by construction: part of the headroom no decoder can remove.

Written once, in the VOC layout, to a cache folder keyed by the generation parameters (the ``cache`` argument, else
``RFBENCH_CACHE``/synthetic-voc, else the project's ``.cache/synthetic-voc``); later runs reuse it. (Version 2, until
2026-12-06, classed shapes by size on a plain grey ground: every decoder reached 98% test mIoU on it.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .voc import IGNORE, write_voc

SHAPES = ("circle", "square", "triangle")
CONTEXTS = ("stripes", "dots")
CLASSES = ("background",) + tuple(f"{shape} on {context}" for shape in SHAPES for context in CONTEXTS)
DISTRACTORS = ("ring", "cross")
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "synthetic-voc"


def cache_root() -> Path:
    """Where generated datasets are written: ``$RFBENCH_CACHE/synthetic-voc`` where that is set, else ``CACHE``."""
    env = os.environ.get("RFBENCH_CACHE")
    return Path(env) / "synthetic-voc" if env else CACHE


@dataclass(frozen=True)
class SyntheticSpec:
    n_train: int = 200
    n_val: int = 80
    n_test: int = 0  # a held-out third split, drawn after val (train and val do not depend on it)
    size: int = 128
    radius: tuple[int, int] = (9, 22)  # object half-extent in pixels
    max_objects: int = 4
    distractors: int = 2  # at most this many rings and crosses (background) per image
    period: tuple[int, int] = (10, 16)  # the ground textures' period in pixels
    overlap: float = 0.5  # the chance that an object may overlap (and hide part of) earlier ones
    pale: float = 0.3  # the share of objects in pale colours (less contrast with the ground)
    one_region: float = 0.25  # the share of images whose ground is one region (no edge)
    noise: float = 0.05  # the standard deviation of the pixel noise (intensities 0..1)
    contrast: float = 0.25  # the ground textures' mean amplitude (intensities 0..1)
    seed: int = 0
    version: int = 3

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.fields(), sort_keys=True).encode()).hexdigest()[:12]

    def fields(self, with_test: bool = True) -> dict:
        """The generation parameters; without ``n_test`` where it is 0 or where ``with_test`` is False (what decides
        trained weights: train and val are drawn first, so a test split changes neither)."""
        fields = asdict(self)
        if not with_test or not self.n_test:
            fields.pop("n_test")
        return fields

    def scaled(self, size: int, **changes) -> SyntheticSpec:
        """The same scenes drawn on a ``size``-pixel canvas with every length (radii, texture periods) scaled from
        this spec's ``size``, plus ``changes`` (e.g. larger canvases holding objects of the training size)."""
        factor = size / self.size
        scale = lambda pair, least: (max(least, round(pair[0] * factor)), max(least + 1, round(pair[1] * factor)))  # noqa: E731
        return replace(self, size=size, radius=scale(self.radius, 2), period=scale(self.period, 3), **changes)


def _shape_mask(shape: str, cy: float, cx: float, r: float, angle: float, yy: np.ndarray,
                xx: np.ndarray) -> np.ndarray:
    """A filled shape of half-extent ``r`` centred at (cy, cx), turned by ``angle`` (squares, triangles, crosses)."""
    dy, dx = yy - cy, xx - cx
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        s = r * 0.886  # the area of the circle of radius r
        return (np.abs(u) <= s) & (np.abs(v) <= s)
    if shape == "triangle":  # inscribed in the circle of radius r, scaled to the circle's area
        h = r * 1.55
        top, bottom = -h * 2 / 3, h / 3
        return (v >= top) & (v <= bottom) & (np.abs(u) <= (v - top) / np.sqrt(3))
    if shape == "ring":
        d2 = dx**2 + dy**2
        return (d2 <= r**2) & (d2 >= (0.6 * r) ** 2)
    if shape == "cross":
        arm = 0.28 * r
        return ((np.abs(u) <= arm) & (np.abs(v) <= r)) | ((np.abs(v) <= arm) & (np.abs(u) <= r))
    raise ValueError(f"unknown shape {shape!r}")


def _ground(rng: np.random.Generator, context: str, spec: SyntheticSpec, yy: np.ndarray, xx: np.ndarray,
            grey: float) -> np.ndarray:
    """One region's texture over the whole canvas: the same grey level, contrast and noise for both textures."""
    period = rng.uniform(*spec.period)
    angle = rng.uniform(0, np.pi)
    amplitude = rng.uniform(2 / 3, 4 / 3) * spec.contrast
    u = np.cos(angle) * xx + np.sin(angle) * yy
    v = -np.sin(angle) * xx + np.cos(angle) * yy
    if context == "stripes":
        pattern = np.sin(2 * np.pi * u / period)
    else:  # dots: a lattice of soft spots, centred to the stripes' mean and scaled to their spread
        cu, cv = (u % period) - period / 2, (v % period) - period / 2
        spots = np.exp(-(cu**2 + cv**2) / (2 * (period / 5) ** 2))
        pattern = (spots - spots.mean()) / max(spots.std(), 1e-6) * np.sqrt(0.5)
    return grey + amplitude * pattern


def _object_colour(rng: np.random.Generator, pale: bool) -> np.ndarray:
    """A colour of random hue, the same distribution for every class: saturated (one channel high, one low) or pale
    (close to a mid grey)."""
    colour = rng.uniform(0.0, 1.0, 3)
    high, low = rng.choice(3, size=2, replace=False)
    colour[high], colour[low] = rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.25)
    if pale:
        colour = 0.5 + (colour - 0.5) * rng.uniform(0.3, 0.5)
    return colour


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a neighbour outside it (4-connectivity): a 1-pixel inner boundary."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    return mask & ~interior


def _place(rng: np.random.Generator, shape: str, spec: SyntheticSpec, yy: np.ndarray, xx: np.ndarray,
           ) -> tuple[np.ndarray, float, float]:
    n = spec.size
    r = min(rng.uniform(*spec.radius), n / 2 - 1)
    cy, cx = rng.uniform(r * 0.5, n - r * 0.5), rng.uniform(r * 0.5, n - r * 0.5)  # may leave the canvas a little
    return _shape_mask(shape, cy, cx, r, rng.uniform(0, 2 * np.pi), yy, xx), cy, cx


def generate_image(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) uint8 image and its (H, W) uint8 label map."""
    n = spec.size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    grey = rng.uniform(0.35, 0.65)
    first = int(rng.integers(len(CONTEXTS)))
    if rng.uniform() < spec.one_region:
        region = np.full((n, n), first)
    else:  # a straight edge through the middle half of the canvas
        angle = rng.uniform(0, np.pi)
        py, px = rng.uniform(0.25 * n, 0.75 * n, 2)
        side = np.cos(angle) * (xx - px) + np.sin(angle) * (yy - py) > 0
        region = np.where(side, first, 1 - first)
    grounds = [_ground(rng, c, spec, yy, xx, grey)[..., None] for c in CONTEXTS]
    image = np.where((region == 0)[..., None], grounds[0], grounds[1]).repeat(3, -1)
    label = np.zeros((n, n), np.uint8)
    owner = np.full((n, n), -1)  # which object each pixel shows (-1: ground or a distractor)
    shown: list[tuple[np.ndarray, int]] = []  # (full mask, class) of each placed object, in drawing order
    for _ in range(int(rng.integers(max(0, spec.distractors) + 1))):  # clutter first: objects may cover it
        shape = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
        mask, _, _ = _place(rng, shape, spec, yy, xx)
        image[mask] = _object_texture(rng, _object_colour(rng, rng.uniform() < spec.pale), spec, yy[mask], xx[mask])
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        may_overlap = rng.uniform() < spec.overlap
        for _attempt in range(20):
            shape_i = int(rng.integers(len(SHAPES)))
            mask, cy, cx = _place(rng, SHAPES[shape_i], spec, yy, xx)
            if mask.sum() <= 8:
                continue
            covered = owner[mask]
            if not may_overlap and (covered >= 0).any():
                continue
            # every earlier object keeps at least half of its area in view
            if all(((owner == i) & ~mask).sum() >= 0.5 * full.sum() for i, (full, _) in enumerate(shown)):
                break
        else:
            continue
        context = int(region[min(n - 1, max(0, int(cy))), min(n - 1, max(0, int(cx)))])
        cls = 1 + shape_i * len(CONTEXTS) + context
        image[mask] = _object_texture(rng, _object_colour(rng, rng.uniform() < spec.pale), spec, yy[mask], xx[mask])
        owner[mask] = len(shown)
        shown.append((mask, cls))
    for i, (_, cls) in enumerate(shown):
        visible = owner == i
        label[visible] = cls
        label[_boundary(visible)] = IGNORE
    image = image + rng.normal(0, spec.noise, image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), label


def _object_texture(rng: np.random.Generator, colour: np.ndarray, spec: SyntheticSpec, yy: np.ndarray,
                    xx: np.ndarray) -> np.ndarray:
    """(n, 3) colours of an object's n pixels: its colour with faint stripes of random angle and frequency."""
    angle, freq, amp = rng.uniform(0, np.pi), rng.uniform(0.2, 0.9), rng.uniform(0.0, 0.1)
    stripes = amp * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    return np.clip(colour[None, :] + stripes[:, None], 0, 1)


def synthetic_voc(spec: SyntheticSpec = SyntheticSpec(), cache: Path | None = None, progress=print) -> Path:
    """The dataset's VOCdevkit root, generated on first use (written whole: temp folder, then renamed)."""
    cache = Path(cache) if cache is not None else cache_root()
    root = cache / f"v{spec.version}-{spec.key()}"
    if (root / "spec.json").is_file():
        return root
    if spec.version != SyntheticSpec.version:
        raise ValueError(f"this code generates version {SyntheticSpec.version} of the shapes set, not {spec.version}")
    if progress:
        progress(f"  generating the synthetic VOC-layout dataset ({spec.n_train} + {spec.n_val} + {spec.n_test} "
                 f"images) in {root}")
    rng = np.random.default_rng(spec.seed)  # one stream, split after split: train and val never depend on n_test
    counts = {"train": spec.n_train, "val": spec.n_val, **({"test": spec.n_test} if spec.n_test else {})}
    images, masks, splits = {}, {}, {split: [] for split in counts}
    for split, count in counts.items():
        for i in range(count):
            image_id = f"{split}_{i:05d}"
            images[image_id], masks[image_id] = generate_image(rng, spec)
            splits[split].append(image_id)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".partial-"))
    try:
        write_voc(tmp, splits, images, masks, classes=CLASSES)
        (tmp / "spec.json").write_text(json.dumps({**spec.fields(), "classes": CLASSES}, indent=2))
        try:
            tmp.rename(root)
        except OSError:  # another process wrote the same dataset meanwhile: keep its copy (same spec, same files)
            if not (root / "spec.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
