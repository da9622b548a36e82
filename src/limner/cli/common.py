"""What the CLI's commands share: the backend names, the user-error exit code, reading images and captions."""

from __future__ import annotations

import sys
from pathlib import Path

from limner.errors import DataError

BACKEND_CHOICES = ("torch", "compile", "onnx", "onnx-int8")  # TextToImagePipeline's BACKENDS, without importing torch here
BACKEND_HELP = ("how the generator runs: torch (eager), compile (torch.compile), onnx or onnx-int8 "
                "(after `limner export`, with --quantize for int8)")

EXIT_USER_ERROR = 2


def user_error(message: str) -> int:
    """Print one line for a mistake in the command line itself, and give its exit code."""
    print(f"limner: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def open_image(path: str):
    """A PIL image read whole from `path`; DataError naming the file when it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from err


def own_captions(model_dir: str, captions_file: str | None, *, limit: int, flag: str) -> list[str]:
    """The lines of `captions_file`, else up to `limit` captions of the data the model was trained on
    (`flag`: the option that names such a file, for the error that asks for one)."""
    from limner.training.data import model_training_captions

    if captions_file:
        try:
            lines = Path(captions_file).read_text().splitlines()
        except OSError as err:
            raise DataError(f"{captions_file}: cannot read the captions ({err})") from err
        captions = [line.strip() for line in lines if line.strip()]
        if not captions:
            raise DataError(f"{captions_file}: holds no captions (one per line)")
        return captions
    return model_training_captions(model_dir, limit=limit, hint=f"; give {flag} FILE (one caption per line)")
