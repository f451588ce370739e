"""Image sets for the analyses: a folder of images, the shipped VOC sample, or seeded noise."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from bench.errors import DataError, MissingFileError

VOC_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "voc-sample"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def normalise(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] float (or uint8 0..255) RGB -> ImageNet-normalised float, as the backbones expect."""
    if images.dtype == torch.uint8:
        images = images.float().div(255)
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def load_image(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """One RGB image as a (3, H, W) float tensor in [0, 1], resized (bilinear) to ``size``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None
    t = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
    t = t.permute(2, 0, 1).float().div(255).unsqueeze(0)
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


def image_folder(folder: str | Path, size: tuple[int, int], limit: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """All images of a folder (sorted by name), resized to ``size``: ((N, 3, H, W) in [0, 1], names)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    paths = paths[:limit] if limit else paths
    return torch.stack([load_image(p, size) for p in paths]), [p.stem for p in paths]


def voc_sample(size: tuple[int, int]) -> tuple[torch.Tensor, list[str]]:
    """The four real PASCAL VOC 2012 images shipped with the project."""
    return image_folder(VOC_SAMPLE / "VOC2012" / "JPEGImages", size)


def noise_images(n: int, size: tuple[int, int], seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Seeded uniform noise in [0, 1]: the ERF of the network alone, without image statistics."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *size, generator=g), [f"noise{i}" for i in range(n)]
