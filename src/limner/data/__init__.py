"""Datasets: the imagefolder reader and the builtin shapes and emoji builders."""

from limner.data.builders import BUILTIN_DATASETS, build_emoji, build_shapes, builtin_data_dir
from limner.data.imagefolder import ImageFolder, write_imagefolder

__all__ = ["BUILTIN_DATASETS", "ImageFolder", "build_emoji", "build_shapes", "builtin_data_dir", "write_imagefolder"]
