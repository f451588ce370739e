"""The data a network is trained on, loaded once, with a hash that says exactly which data it was.

Weights are picked on val (the best evaluation) and reported on a held-out test split where there is one: the
generated set's third split (``SyntheticSpec.n_test``, drawn after val), or a folder's ``test.txt`` when every
image it lists has a mask. Without one, val both picks and reports, and :attr:`NetworkData.test_note` says so.
The test split decides no weight, so it is not part of the hash.

Either the generated shapes set (its hash is that of its generation spec without ``n_test``: the same spec writes
the same files) or any VOC-layout folder. A folder's hash covers the contents (SHA-256) of its train
and val split files, of ``classes.txt`` where there is one, and of every image and mask those
splits list, with their paths relative to the VOC2012 folder: the same data moved elsewhere keeps
its hash, and any edited, added or removed file changes it. Reading every listed file costs about a
second per few hundred MB, small beside training.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench import validation
from bench.errors import DataError, MissingFileError, UsageTypeError

from ..datasets.images import normalise
from ..datasets.synthetic import SyntheticSpec, synthetic_voc
from ..datasets.voc import (
    IGNORE,
    VOCSegmentation,
    class_names,
    dataset_classes,
    text_lines,
    voc2012_dir,
    warn_shared_images,
)

SPLITS = ("train", "val")
RESIZE = "short side, aspect kept, padded with ignored pixels"
"""How a folder's images are resized (part of its hash: it replaced a square resize on 2026-12-05, so networks
trained on a folder before then retrain)."""


@dataclass
class NetworkData:
    """Train, val and (where there is one) test splits (uint8 images and masks, as ``load_all`` gives them):
    generated images at ``size`` x ``size``; a folder's images with their short side at ``size`` and their aspect
    kept, padded with ignored pixels to each split's largest height and width."""

    train_images: torch.Tensor
    train_masks: torch.Tensor
    val_images: torch.Tensor
    val_masks: torch.Tensor
    size: int
    num_classes: int
    classes: tuple[str, ...]
    class_source: str  # where K came from ("classes.txt", "given", "largest label + 1")
    source: dict  # {"kind": "generated", "spec": {...}} or {"kind": "voc", "root": "/abs/path"}
    hash: str  # see the module docstring
    test_images: torch.Tensor | None = None  # the held-out split (None: val picks and reports)
    test_masks: torch.Tensor | None = None
    test_note: str = "no test split: val picked the kept weights and reports them"

    # The networks' inputs: each split ImageNet-normalised (float), made once per process on first use, so that the
    # loop, evaluation and the branch shares all read one prepared copy (normalising is elementwise: a crop of the
    # normalised split is the normalised crop, value for value). Not pickled: a worker process gets the uint8 images.
    @functools.cached_property
    def train_inputs(self) -> torch.Tensor:
        return normalise(self.train_images)

    @functools.cached_property
    def val_inputs(self) -> torch.Tensor:
        return normalise(self.val_images)

    @functools.cached_property
    def test_inputs(self) -> torch.Tensor | None:
        return None if self.test_images is None else normalise(self.test_images)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_inputs")}

    @property
    def reported_split(self) -> str:
        """Where reported mIoU comes from: ``"test"`` or ``"val"`` (val then also picked the weights)."""
        return "test" if self.test_images is not None else "val"

    def short(self) -> str:
        """The data in a few words for a table row: the generated shapes, or a folder with its class count, split
        sizes, image side and which split reports."""
        if self.source["kind"] == "generated":
            return "generated shapes"
        test = f"{len(self.test_images)} test" if self.test_images is not None else "no test"
        return (f"folder '{Path(self.source['root']).name}' ({self.num_classes} classes, {len(self.train_images)} "
                f"train / {len(self.val_images)} val / {test}, short side {self.size}px, "
                f"{self.reported_split} reports)")

    def describe(self) -> str:
        test = f" / {len(self.test_images)} test" if self.test_images is not None else ""
        if self.source["kind"] == "generated":
            spec = self.source["spec"]
            what = f"generated shapes ({spec['n_train']} train / {spec['n_val']} val{test} images)"
        else:
            what = f"VOC-layout data at {self.source['root']} ({len(self.train_images)} train / " \
                   f"{len(self.val_images)} val{test} images)"
        shape = (f"{self.size}x{self.size}px" if self.source["kind"] == "generated" else
                 f"short side {self.size}px, aspect kept (train padded to "
                 f"{self.train_images.shape[-2]}x{self.train_images.shape[-1]}px)")
        return (f"{what} at {shape}; K = {self.num_classes} classes ({self.class_source}), "
                f"{IGNORE} ignored" + ("" if self.test_images is not None else f"; {self.test_note}"))


def check_source(source: SyntheticSpec | str | Path | None) -> None:
    """The folder exists and has the VOC layout (nothing is read yet); a spec is taken as it is."""
    if source is None or isinstance(source, SyntheticSpec):
        return
    if not isinstance(source, (str, Path)):
        raise UsageTypeError(f"data must be a SyntheticSpec or a VOC-layout folder, got {source!r}")
    if Path(source).exists() and not Path(source).is_dir():
        raise DataError(f"{source} is a file, not a folder: give the VOC-layout folder (the one holding VOC2012/)")
    if not Path(source).is_dir():
        raise MissingFileError(f"no VOC-layout data under {source}: the folder does not exist")
    voc2012_dir(source)


def _sha256(path: Path, digest) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def folder_hash(root: str | Path) -> str:
    """SHA-256 over the train/val split files, classes.txt and every listed image and mask."""
    base = voc2012_dir(root)
    digest = hashlib.sha256()
    digest.update(RESIZE.encode())  # how the files become tensors decides the weights too
    classes = base / "classes.txt"
    if classes.is_file():  # its lines, not its bytes: a BOM, CRLF endings or blank lines change no class
        digest.update(b"classes.txt\0" + "\n".join(text_lines(classes)).encode())
    for split in SPLITS:
        dataset = VOCSegmentation(root, split, (validation.MIN_SIDE, validation.MIN_SIDE))
        split_file = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        digest.update(f"\0split {split}\0".encode() + "\n".join(text_lines(split_file)).encode())
        for i in range(len(dataset)):
            for path in dataset.paths(i):
                if not path.is_file():
                    raise MissingFileError(f"missing file for image id {dataset.ids[i]!r}: {path}")
                digest.update(f"\0{path.relative_to(base).as_posix()}\0".encode())
                _sha256(path, digest)
    return digest.hexdigest()


def load_data(source: SyntheticSpec | str | Path | None, size: int, num_classes: int | None = None,
              progress=print, cache: str | Path | None = None) -> NetworkData:
    """Read the train and val splits at ``size`` x ``size`` (the generated default when ``source`` is None;
    generated into ``cache``, default :func:`analysis.datasets.synthetic.cache_root`).

    K comes from ``num_classes``, else ``classes.txt``, else the largest label + 1 over both splits.
    A split without a single labelled pixel (all 255) is a :class:`DataError`: no mIoU is defined on it.
    """
    validation.integer("size", size, minimum=validation.MIN_SIDE, maximum=validation.MAX_SIDE)
    if num_classes is not None:
        validation.integer("num_classes", num_classes, minimum=2, maximum=IGNORE)
    check_source(source)
    if source is None or isinstance(source, SyntheticSpec):
        spec = source or SyntheticSpec()
        root = synthetic_voc(spec, cache=cache, progress=progress)
        described = {"kind": "generated", "spec": asdict(spec)}
        weighed = {"kind": "generated", "spec": spec.fields(with_test=False)}  # what decides weights
        data_hash = hashlib.sha256(json.dumps(weighed, sort_keys=True).encode()).hexdigest()
    else:
        root = Path(source)
        described = {"kind": "voc", "root": str(Path(source).resolve())}
        data_hash = folder_hash(root)
        warn_shared_images(root)
    names = class_names(root)
    given = num_classes or (len(names) if names else None)  # None: inferred from the labels below
    keep_aspect = described["kind"] == "voc"  # generated images are square
    train = VOCSegmentation(root, "train", (size, size), num_classes=given, keep_aspect=keep_aspect).load_all()
    val = VOCSegmentation(root, "val", (size, size), num_classes=given, keep_aspect=keep_aspect).load_all()
    for split, (_, masks) in zip(SPLITS, (train, val), strict=True):
        if not (masks != IGNORE).any():
            raise DataError(f"the {split} split of {root} has no labelled pixel (every mask pixel is {IGNORE}, "
                            f"ignored) at {size}x{size}: no loss or mIoU is defined on it")
        if not ((masks != IGNORE) & (masks != 0)).any():
            why = ("nothing to learn" if split == "train" else
                   "predicting background everywhere scores 100% mIoU on it, so it cannot pick weights")
            raise DataError(f"the {split} split of {root} labels background only (class 0) at {size}x{size}: {why}; "
                            "give it images with objects")
    k, classes, class_source = dataset_classes(root, num_classes, [train[1], val[1]])
    test, note = test_split(root, size, k, keep_aspect)
    return NetworkData(train[0], train[1], val[0], val[1], size, k, tuple(classes), class_source, described,
                       data_hash, *(test or (None, None)), note)


def test_split(root: str | Path, size: int, num_classes: int, keep_aspect: bool = True
               ) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, str]:
    """The held-out split of a VOC-layout folder, read at ``size``, and a note saying where reported numbers come
    from. None where ``test.txt`` is absent, or lists images none of which has a mask (a benchmark server's split,
    as VOC2012's own). A test.txt with masks for some images only is a DataError naming one that lacks it."""
    base = voc2012_dir(root)
    split_file = base / "ImageSets" / "Segmentation" / "test.txt"
    if not split_file.is_file():
        return None, "no test split (no test.txt): val picked the kept weights and reports them"
    dataset = VOCSegmentation(root, "test", (size, size), num_classes=num_classes, keep_aspect=keep_aspect)
    masks = [dataset.paths(i)[1] for i in range(len(dataset))]  # a missing *image* is a MissingFileError there
    missing = [path for path in masks if not path.is_file()]
    if len(missing) == len(dataset):
        return None, (f"test.txt lists {len(dataset)} images without masks (a benchmark server's split): val picked "
                      "the kept weights and reports them")
    if missing:
        raise DataError(f"{split_file} lists {len(missing)} of {len(dataset)} images without a mask (first "
                        f"missing: {missing[0]}); give every test image its mask, or none (then val picks and "
                        "reports)")
    images, masks = dataset.load_all()  # labels checked against K as they are read
    if not (masks != IGNORE).any():
        raise DataError(f"the test split of {root} has no labelled pixel (every mask pixel is {IGNORE}) at "
                        f"{size}x{size}: no mIoU is defined on it")
    return (images, masks), f"weights picked on val, reported on the held-out test split ({len(images)} images)"
