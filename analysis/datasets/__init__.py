"""Data for the analyses: VOC-layout segmentation sets, the generated shapes set, image folders."""

from .images import IMAGENET_MEAN, IMAGENET_STD, VOC_SAMPLE, image_folder, noise_images, normalise, voc_sample
from .synthetic import SyntheticSpec, synthetic_voc
from .voc import IGNORE, VOC_CLASSES, VOCSegmentation, dataset_classes, write_voc

__all__ = [
    "IGNORE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VOC_CLASSES",
    "VOC_SAMPLE",
    "SyntheticSpec",
    "VOCSegmentation",
    "dataset_classes",
    "image_folder",
    "noise_images",
    "normalise",
    "synthetic_voc",
    "voc_sample",
    "write_voc",
]
