"""Segmentation data in the VOCdevkit layout (PASCAL VOC 2012 or any dataset laid out like it).

Layout (``root`` is the VOCdevkit folder or its ``VOC2012`` subfolder)::

    VOC2012/JPEGImages/<id>.jpg (or .jpeg / .png)
    VOC2012/SegmentationClass/<id>.png          palette or greyscale PNG: pixel value = class id, 255 = ignore
    VOC2012/ImageSets/Segmentation/<split>.txt  one id per line
    VOC2012/classes.txt                         optional: one class name per line, background first

The number of classes K comes, in this order, from the caller (``num_classes``), from
``classes.txt``, or from the masks themselves (largest label + 1 over the splits read, see
:func:`dataset_classes`). Label values must be 0..K-1 or 255; anything else is an error naming
the file and the value. Images are resized bilinearly, masks with nearest neighbour (class ids
never blend).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench import validation
from bench.errors import DataError, InputWarning, MissingFileError

IGNORE = 255
MAX_CLASSES = 255  # 255 is the ignore label; uint8 masks hold 0..254
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def voc_palette() -> list[int]:
    """The standard VOC colour map (256 entries, flattened RGB)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def voc2012_dir(root: str | Path) -> Path:
    root = Path(root)
    for candidate in (root / "VOC2012", root / "VOCdevkit" / "VOC2012", root):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    raise MissingFileError(
        f"no VOC2012 segmentation data under {root}: expected {root}/VOC2012/ImageSets/Segmentation "
        "(or VOCdevkit/VOC2012/..., or the VOC2012 folder itself)"
    )


def text_lines(path: Path) -> list[str]:
    """The non-blank lines of a text file, stripped: read as UTF-8, a byte-order mark and CRLF line endings taken
    off (a file saved by another editor is the same file); a file in another encoding is a DataError naming it."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.object[err.start:err.start + 1]!r}); save it "
                        "as UTF-8") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def listed_ids(split_file: Path) -> list[str]:
    """The image ids a split file lists, one per non-blank line, in order (repeats kept)."""
    return text_lines(split_file)


def _some(ids: list[str], shown: int = 5) -> str:
    return ", ".join(ids[:shown]) + (" ..." if len(ids) > shown else "")


def warn_shared_images(root: str | Path, splits: tuple[str, ...] = ("train", "val", "test")) -> None:
    """An :class:`InputWarning` for every pair of the folder's split files that list the same image id: val would
    pick (and test report) weights by images the network trained on."""
    base = voc2012_dir(root) / "ImageSets" / "Segmentation"
    ids = {s: set(listed_ids(base / f"{s}.txt")) for s in splits if (base / f"{s}.txt").is_file()}
    names = list(ids)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(ids[a] & ids[b])
            if shared:
                warnings.warn(f"{base}: {len(shared)} image id(s) are in both {a}.txt and {b}.txt ({_some(shared)}); "
                              + (f"{b} scores images the network trained on" if a == "train" else
                               f"{b} reports on images that {a} picked the weights by"),
                              InputWarning, stacklevel=2)


def class_names(root: str | Path) -> tuple[str, ...] | None:
    """The names in ``VOC2012/classes.txt`` (background first), or None where there is no such file."""
    path = voc2012_dir(root) / "classes.txt"
    if not path.is_file():
        return None
    names = tuple(text_lines(path))
    if not 2 <= len(names) <= MAX_CLASSES:
        raise DataError(f"{path}: expected 2..{MAX_CLASSES} class names (background first), got {len(names)}")
    seen: dict[str, int] = {}
    for line, name in enumerate(names, 1):
        if name in seen:  # the per-class tables are keyed by name: a repeated one would lose a class silently
            raise DataError(f"{path}: class name {name!r} appears twice (class {seen[name] - 1} and class "
                            f"{line - 1}); every class needs its own name")
        seen[name] = line
    return names


@dataclass
class VOCSegmentation:
    """A split of a VOC-layout dataset, resized to ``size`` (H, W); ``len`` and ``[i] -> (image, mask)``.

    image: float (3, H, W) in [0, 1]; mask: int64 (H, W) with class ids and 255. With ``num_classes``
    set, a label outside 0..num_classes-1 (other than 255) is an error naming the file and value.
    """

    root: str | Path
    split: str = "train"
    size: tuple[int, int] = (512, 512)
    num_classes: int | None = None
    keep_aspect: bool = False  # True: each image's short side becomes min(size), its aspect kept (see load_all)

    def __post_init__(self) -> None:
        validation.image_size("size", *self.size)
        if self.num_classes is not None:
            validation.integer("num_classes", self.num_classes, minimum=2, maximum=MAX_CLASSES)
        self.base = voc2012_dir(self.root)
        split_file = self.base / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        if not split_file.is_file():
            available = sorted(p.stem for p in split_file.parent.glob("*.txt"))
            raise MissingFileError(f"split file not found: {split_file} (available splits: {', '.join(available)})")
        listed = listed_ids(split_file)
        self.ids = list(dict.fromkeys(listed))  # an id listed twice is one image (it would count twice in every score)
        self.duplicates = sorted({i for i in listed if listed.count(i) > 1})
        if self.duplicates:
            warnings.warn(f"{split_file}: {len(self.duplicates)} id(s) listed more than once, each read once: "
                          f"{_some(self.duplicates)}", InputWarning, stacklevel=2)
        if not self.ids:
            raise DataError(f"split file {split_file} lists no images")

    def __len__(self) -> int:
        return len(self.ids)

    def paths(self, i: int) -> tuple[Path, Path]:
        image_id = self.ids[i]
        candidates = [self.base / "JPEGImages" / f"{image_id}{s}" for s in IMAGE_SUFFIXES]
        found = [p for p in candidates if p.is_file()]
        if not found:  # name every file looked for, not only the first suffix's
            tried = ", ".join(p.name for p in candidates)
            raise MissingFileError(f"missing image for image id {image_id!r}: none of {tried} in "
                                   f"{candidates[0].parent}")
        if len(found) > 1:  # which one is meant is not ours to guess
            raise DataError(f"image id {image_id!r} has {len(found)} images in {found[0].parent}: "
                            f"{', '.join(p.name for p in found)}; keep one")
        image = found[0]
        return image, self.base / "SegmentationClass" / f"{image_id}.png"

    def _mask(self, mask_path: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(mask_path) as m:
            if m.mode not in ("P", "L"):
                raise DataError(f"{mask_path}: expected a palette or greyscale PNG of class ids, got mode {m.mode}")
            mask = np.asarray(m)
        if self.num_classes is not None:
            values = np.unique(mask)
            bad = values[(values >= self.num_classes) & (values != IGNORE)]
            if len(bad):
                raise DataError(f"{mask_path}: label value {int(bad[0])} outside 0..{self.num_classes - 1} "
                                 f"(num_classes={self.num_classes}; {IGNORE} = ignore)")
        return mask

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        image_path, mask_path = self.paths(i)  # a missing image raises there
        if not mask_path.is_file():
            raise MissingFileError(f"missing mask for image id {self.ids[i]!r}: {mask_path}")
        try:
            with Image.open(image_path) as im:
                rgb = np.asarray(im.convert("RGB"))
            mask = self._mask(mask_path)
        except OSError as err:
            raise DataError(f"cannot read {image_path.name} / {mask_path.name}: {err}") from None
        if rgb.shape[:2] != mask.shape:
            raise DataError(f"image and mask sizes differ for {self.ids[i]!r}: {rgb.shape[:2]} vs {mask.shape}")
        size = self.target_size(*rgb.shape[:2])
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        mask_t = torch.from_numpy(mask.astype(np.int64)).view(1, 1, *mask.shape).float()
        mask_t = F.interpolate(mask_t, size=size, mode="nearest")[0, 0].long()
        return image.clamp(0, 1), mask_t

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) an image of ``height`` x ``width`` is resized to: ``size``, or with ``keep_aspect`` its short side
        at min(size) and its long side scaled alike (at most ``validation.MAX_SIDE``)."""
        if not self.keep_aspect:
            return tuple(self.size)
        short = min(self.size)
        scale = short / min(height, width)
        return (min(validation.MAX_SIDE, max(short, round(height * scale))),
                min(validation.MAX_SIDE, max(short, round(width * scale))))

    def load_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split, compact: uint8 (N, 3, H, W) images (0..255) and uint8 (N, H, W) masks.

        A quarter of float32 images and an eighth of int64 masks: VOC train at 512x512 is ~1.5 GB
        instead of ~7.6 GB. ``analysis.datasets.images.normalise`` takes uint8 images; cast masks
        with ``.long()`` where a loss needs it. With ``keep_aspect`` images of different shapes are padded at the
        bottom and right to the split's largest height and width: black pixels whose mask is 255 (ignored), so
        they count in no loss and no score (as the reference implementations pad VOC to 500 px).
        """
        items = []
        for i in range(len(self)):
            image, mask = self[i]  # compact at once: class ids < 255 and 255 (ignore) fit in uint8
            items.append((image.mul(255).round().to(torch.uint8), mask.to(torch.uint8)))
        height = max(image.shape[-2] for image, _ in items)
        width = max(image.shape[-1] for image, _ in items)
        images = torch.zeros(len(items), 3, height, width, dtype=torch.uint8)
        masks = torch.full((len(items), height, width), IGNORE, dtype=torch.uint8)
        for i, (image, mask) in enumerate(items):
            images[i, :, : image.shape[-2], : image.shape[-1]] = image
            masks[i, : mask.shape[-2], : mask.shape[-1]] = mask
        return images, masks


def dataset_classes(root: str | Path, num_classes: int | None = None, masks: list[torch.Tensor] = ()
                    ) -> tuple[int, tuple[str, ...], str]:
    """(K, class names, where K came from): the option, ``classes.txt``, or the largest label seen + 1."""
    names = class_names(root)
    if num_classes is not None:
        validation.integer("num_classes", num_classes, minimum=2, maximum=MAX_CLASSES)
        if names is not None and len(names) != num_classes:
            raise DataError(f"num_classes={num_classes} but {voc2012_dir(root) / 'classes.txt'} names {len(names)}")
        return num_classes, names or _numbered(num_classes), "given"
    if names is not None:
        return len(names), names, "classes.txt"
    seen = [int(m[m != IGNORE].max()) for m in masks if (m != IGNORE).any()]
    k = max(seen, default=0) + 1
    if k < 2:
        raise DataError(f"cannot tell the number of classes of {root}: no foreground label in the masks read; "
                         "pass num_classes")
    if k == len(VOC_CLASSES):
        return k, VOC_CLASSES, "largest label + 1 (PASCAL VOC names)"
    return k, _numbered(k), "largest label + 1"


def _numbered(k: int) -> tuple[str, ...]:
    return ("background",) + tuple(f"class {c}" for c in range(1, k))


def write_voc(root: Path, split_ids: dict[str, list[str]], images: dict[str, np.ndarray],
              masks: dict[str, np.ndarray], classes: tuple[str, ...] | None = None) -> Path:
    """Write a dataset in the VOC layout (JPEG quality 95, palette PNG masks, optional classes.txt);
    returns the VOC2012 folder."""
    from PIL import Image

    base = root / "VOC2012"
    (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (base / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    for image_id, rgb in images.items():
        Image.fromarray(rgb).save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
        mask = Image.fromarray(masks[image_id].astype(np.uint8), mode="P")
        mask.putpalette(palette)
        mask.save(base / "SegmentationClass" / f"{image_id}.png")
    for split, ids in split_ids.items():
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    if classes is not None:
        (base / "classes.txt").write_text("\n".join(classes) + "\n")
    return base
