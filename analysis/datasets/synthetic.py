"""The embedded default dataset: generated shapes in the VOC layout, where the class needs context.

Each image holds one to three non-overlapping objects on a grey, lightly textured background. An
object's class is its shape (circle, square, triangle) and its size (small, large): six classes plus
background. Objects are saturated colours and backgrounds are grey, so object vs background is a
local cue (as it mostly is in VOC); but colour and texture are drawn from the same distribution for
every class, so a pixel's own colour says nothing about *which* class: the shape needs the object's
outline and the size needs its extent, i.e. context a few times larger than a pixel's
neighbourhood. Object boundaries are marked 255 (ignored), as in VOC.

(Version 1 drew the background from the same colourful textures as the objects; a ResNet-18 could
not learn that figure-ground task in the few CPU minutes the embedded default has.)

Written once, in the VOC layout, to a cache folder keyed by the generation parameters; later runs
reuse it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .voc import IGNORE, write_voc

SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
CLASSES = ("background",) + tuple(f"{size} {shape}" for shape in SHAPES for size in SIZES)
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "synthetic-voc"


@dataclass(frozen=True)
class SyntheticSpec:
    n_train: int = 200
    n_val: int = 80
    n_test: int = 0  # a held-out third split, drawn after val (train and val do not depend on it)
    size: int = 256
    small_radius: tuple[int, int] = (16, 26)  # object half-extent in pixels
    large_radius: tuple[int, int] = (40, 60)
    max_objects: int = 3
    seed: int = 0
    version: int = 2

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.fields(), sort_keys=True).encode()).hexdigest()[:12]

    def fields(self, with_test: bool = True) -> dict:
        """The generation parameters; without ``n_test`` where it is 0 (so a spec without a test split keeps the key
        it had before the field existed) or where ``with_test`` is False (what decides trained weights: train and
        val are drawn first, so a test split changes neither)."""
        fields = asdict(self)
        if not with_test or not self.n_test:
            fields.pop("n_test")
        return fields


def _shape_mask(shape: str, cy: float, cx: float, r: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    if shape == "circle":
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    if shape == "square":
        s = r * 0.886  # same area as the circle of radius r
        return (np.abs(yy - cy) <= s) & (np.abs(xx - cx) <= s)
    # upward triangle inscribed in the circle of radius r (scaled to the circle's area)
    h = r * 1.55
    top, bottom = cy - h * 2 / 3, cy + h / 3
    half_width = (yy - top) / h * (h / np.sqrt(3))
    return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half_width)


def _texture(rng: np.random.Generator, base: np.ndarray, size: int, yy: np.ndarray, xx: np.ndarray,
             where: np.ndarray | None = None) -> np.ndarray:
    """Colour ``base`` with random faint stripes and noise: (size, size, 3), or (n, 3) at the n pixels of the
    boolean mask ``where`` (the same values as the whole texture there: the noise of every pixel is drawn, so the
    random stream, and with it every later image, does not depend on the mask)."""
    angle, freq, amp = rng.uniform(0, np.pi), rng.uniform(0.2, 0.9), rng.uniform(0.0, 0.1)
    noise = rng.normal(0, 0.04, (size, size, 3))
    if where is not None:
        yy, xx, noise = yy[where], xx[where], noise[where]
    stripes = amp * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    return np.clip(base[..., :] + stripes[..., None] + noise, 0, 1)


def _object_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour of random hue: one channel high, one low (the same distribution for every class)."""
    colour = rng.uniform(0.0, 1.0, 3)
    high, low = rng.choice(3, size=2, replace=False)
    colour[high], colour[low] = rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.25)
    return colour


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a neighbour outside it (4-connectivity): a 1-pixel inner boundary."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    return mask & ~interior


def generate_image(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) uint8 image and its (H, W) uint8 label map."""
    n = spec.size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    image = _texture(rng, np.full(3, rng.uniform(0.3, 0.7)), n, yy, xx)  # grey
    label = np.zeros((n, n), np.uint8)
    occupied = np.zeros((n, n), bool)
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        for _attempt in range(20):
            shape_i, size_i = int(rng.integers(len(SHAPES))), int(rng.integers(len(SIZES)))
            lo, hi = spec.small_radius if size_i == 0 else spec.large_radius
            r = min(rng.uniform(lo, hi), n / 2 - 1)
            cy, cx = rng.uniform(r, n - r), rng.uniform(r, n - r)
            mask = _shape_mask(SHAPES[shape_i], cy, cx, r, yy, xx)
            grown = np.pad(mask, 2)[:-4, 2:-2] | np.pad(mask, 2)[4:, 2:-2] | mask  # keep a gap between objects
            if mask.sum() > 4 and not (grown & occupied).any():
                break
        else:
            continue
        image[mask] = _texture(rng, _object_colour(rng), n, yy, xx, where=mask)
        label[mask] = 1 + shape_i * len(SIZES) + size_i
        label[_boundary(mask)] = IGNORE
        occupied |= mask
    return (image * 255).round().astype(np.uint8), label


def synthetic_voc(spec: SyntheticSpec = SyntheticSpec(), cache: Path | None = None, progress=print) -> Path:
    """The dataset's VOCdevkit root, generated on first use (written whole: temp folder, then renamed)."""
    cache = cache or CACHE
    root = cache / f"v{spec.version}-{spec.key()}"
    if (root / "spec.json").is_file():
        return root
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
