"""limner: words into pictures and pictures into words.

Importing limner is cheap; the heavy parts load when first used:

    from limner.pipelines import TextToImagePipeline
    pipe = TextToImagePipeline.from_pretrained("outputs/shapes")
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
