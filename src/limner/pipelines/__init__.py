"""Inference pipelines (no training code here)."""

from limner.pipelines.text_to_image import TextToImagePipeline

__all__ = ["TextToImagePipeline"]
