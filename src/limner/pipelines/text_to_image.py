"""Inference: captions in, PIL images out."""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from PIL import Image

from limner.errors import ConfigError, ModelLoadError
from limner.models import Generator, generator_noise
from limner.models.gan import spread_codes, with_code
from limner.pipelines.adapters import LoraLoaderMixin
from limner.text import TextEncoder, load_text_encoder
from limner.pipelines.safety_checker import SafetyChecker, blank_flagged
from limner.text.prompts import prompt_warnings

log = logging.getLogger(__name__)
from limner.utils.files import read_json_object
from limner.utils.images import to_pil

MODEL_INDEX = "model_index.json"
SAFETY_CHECKER = "safety_checker"  # a model folder's own output checker, loaded with it when present
TRAINING_WORDS = "training_words.json"  # the training captions' words: prompts that share none get a warning
BACKENDS = ("torch", "compile", "onnx", "onnx-int8")


@dataclass
class TextToImageOutput:
    """What `pipe(..., return_dict=True)` gives: the images and, per image, whether the pipeline's
    safety checker flagged it (then it is blank); None without a checker (the diffusers convention)."""

    images: list[Image.Image]
    nsfw_content_detected: list[bool] | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """One caller's ask inside a shared batch: its own prompt, count, seed and truncation."""

    prompt: str
    num_images: int = 1
    seed: int | None = None
    truncation: float | None = None


class TextToImagePipeline(LoraLoaderMixin):
    """A generator and its text encoder (and any adapters from `limner finetune`: LoraLoaderMixin).

    >>> pipe = TextToImagePipeline.from_pretrained("outputs/shapes")
    >>> images = pipe(["a small red circle in the top left"], num_images_per_prompt=4, seed=0)
    """

    def __init__(self, generator: Generator, text_encoder: TextEncoder, *, truncation: float = 1.0, max_batch_size: int = 64,
                 training_words: Iterable[str] | None = None, safety_checker: "SafetyChecker | None" = None,
                 guidance_scale: float = 1.0, spread_codes: bool = True):
        self.generator = generator.eval()
        # the training captions' mean embedding, the centre that guidance_scale pushes away from (None: no such statistic)
        norm = getattr(generator, "text_norm", None)
        self.caption_centre = None if norm is None else norm.mean.detach().clone()
        self.guidance_scale = check_guidance_scale(guidance_scale)
        # a generator with noise codes: one prompt's images take the codes in turn (models.gan.spread_codes)
        self.spread_codes = spread_codes
        # flags unwanted pictures, which are then drawn blank (limner.pipelines.safety_checker); None: no check
        self.safety_checker = safety_checker
        self.text_encoder = text_encoder
        self.truncation = truncation
        self.max_batch_size = max_batch_size
        # the words of the training captions (limner.text.prompts.vocabulary_of); None: not known (older models)
        self.training_words = None if training_words is None else frozenset(training_words)

    def prompt_warnings(self, prompt: str) -> list[tuple[str, str]]:
        """(code, message) for what to tell a user about this prompt before drawing it
        (limner.text.prompts.prompt_warnings): no descriptive word, no word the model was trained on,
        or longer than the encoder reads."""
        read = getattr(self.text_encoder, "reading", lambda text: text)(prompt)  # a lexicon's names count as known words
        return prompt_warnings(read, self.training_words, token_count=self.text_encoder.token_count(prompt),
                               max_tokens=self.text_encoder.max_length)

    @torch.no_grad()
    def __call__(
        self,
        prompts: str | Sequence[str],
        *,
        num_images_per_prompt: int = 1,
        seed: int | None = None,
        truncation: float | None = None,
        code: int | str | None = None,
        return_dict: bool = False,
    ) -> list[Image.Image] | TextToImageOutput:
        """Images grouped by prompt: all of prompt 0's, then prompt 1's, ... A prompt the model may
        not understand (see prompt_warnings) is still drawn, and logged as a warning. With a safety
        checker, flagged images come back blank (logged); return_dict=True also tells which. `code`:
        every image from this one noise code (its number, or its name where training tied the codes
        to a column, e.g. "twitter"; see code_names) instead of the codes in turn."""
        for prompt in [prompts] if isinstance(prompts, str) else prompts:
            for _, message in self.prompt_warnings(prompt) if isinstance(prompt, str) and prompt.strip() else ():
                log.warning(message)
        images = self.generate_tensors(prompts, num_images_per_prompt=num_images_per_prompt, seed=seed, truncation=truncation, code=code)
        flags = None
        if self.safety_checker is not None:
            flagged = self.safety_checker(images)
            if flagged.any():
                log.warning("the safety checker flagged %d of %d images: they are blank", int(flagged.sum()), len(flagged))
            images, flags = blank_flagged(images, flagged), flagged.tolist()
        return TextToImageOutput(to_pil(images), flags) if return_dict else to_pil(images)

    @torch.no_grad()
    def generate_tensors(self, prompts: str | Sequence[str], *, num_images_per_prompt: int = 1, seed: int | None = None,
                         truncation: float | None = None, code: int | str | None = None) -> torch.Tensor:
        """Like __call__, but returns (N, 3, H, W) in [-1, 1]."""
        code = None if code is None else self.code_index(code)  # refused before any work
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ConfigError("prompts must be one or more non-empty strings")
        if num_images_per_prompt < 1:
            raise ConfigError(f"num_images_per_prompt must be at least 1, got {num_images_per_prompt}")
        rng = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))
        sentence = self.guided(self.text_encoder.encode(prompts).sentence).repeat_interleave(num_images_per_prompt, 0)  # (N, D)
        noise = generator_noise(
            self.generator.config, sentence.shape[0],
            truncation=self.truncation if truncation is None else truncation,
            generator=rng,
        )
        if code is not None:
            noise = with_code(noise, code, self.generator.config.noise_codes)
        else:
            noise = self._named_codes(self._spread(noise, num_images_per_prompt, rng), [p for p in prompts for _ in range(num_images_per_prompt)])
        return self._run_generator(noise, sentence)

    def _named_codes(self, noise: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """noise (N, Z), one prompt per row: where the generator was trained to take its code from the
        prompt (code_from_prompt), each row whose prompt names a code takes that code."""
        if not getattr(self.generator.config, "code_from_prompt", False):
            return noise
        named = torch.tensor([named_code(prompt, self.code_names) for prompt in prompts])
        rows = named >= 0
        if rows.any():
            noise = noise.clone()
            noise[rows] = with_code(noise[rows], named[rows].to(noise.device), self.generator.config.noise_codes)
        return noise

    @property
    def code_names(self) -> tuple[str, ...]:
        """What each noise code was taught to draw, where training tied the codes to a metadata
        column (GANTrainConfig.noise_code_column); () otherwise."""
        return tuple(getattr(self.generator.config, "noise_code_names", ()))

    def code_index(self, code: int | str) -> int:
        """A noise code by number or by name (code_names) -> its number; a clear error otherwise."""
        codes = getattr(self.generator.config, "noise_codes", 0)
        if not codes:
            raise ConfigError("this generator has no noise codes to choose (it was trained without generator.noise_codes)")
        names = self.code_names
        if isinstance(code, str):
            if code in names:
                return names.index(code)
            if not code.strip().isdigit():
                known = f"its codes are named {', '.join(repr(n) for n in names)}" if names else f"its codes are numbered 0 to {codes - 1}"
                raise ConfigError(f"unknown noise code {code!r}: {known}")
            code = int(code)
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < codes:
            raise ConfigError(f"noise code must be 0 to {codes - 1} (or one of its names), got {code!r}")
        return code

    @torch.no_grad()
    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[torch.Tensor]:
        """Several requests through the generator together; one (n, 3, H, W) tensor per request.

        Each request draws its noise from its own seed, so its images are the same
        as `generate_tensors(prompt, num_images_per_prompt=n, seed=seed)` alone,
        whatever else shares the batch.
        """
        if not requests:
            return []
        prompts = sorted({r.prompt for r in requests})
        if any(not p.strip() for p in prompts):
            raise ConfigError("prompts must be non-empty strings")
        table = dict(zip(prompts, self.guided(self.text_encoder.encode(prompts).sentence)))
        sentence = torch.stack([table[r.prompt] for r in requests for _ in range(r.num_images)])  # (N, D)
        noise = torch.cat([self._request_noise(r) for r in requests])
        return list(self._run_generator(noise, sentence).split([r.num_images for r in requests]))

    def _request_noise(self, request: GenerationRequest) -> torch.Tensor:
        """A request's noise from its own seed: what generate_tensors draws for it alone."""
        rng = torch.Generator().manual_seed(request.seed if request.seed is not None else secrets.randbits(63))
        noise = generator_noise(self.generator.config, request.num_images,
                                truncation=self.truncation if request.truncation is None else request.truncation, generator=rng)
        return self._named_codes(self._spread(noise, request.num_images, rng), [request.prompt] * request.num_images)

    def _spread(self, noise: torch.Tensor, per_prompt: int, rng: torch.Generator) -> torch.Tensor:
        codes = getattr(self.generator.config, "noise_codes", 0)
        return spread_codes(noise, per_prompt, codes, rng) if self.spread_codes and codes else noise

    def guided(self, sentence: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings (N, D) pushed `guidance_scale` times as far from the training captions'
        mean: what sets this caption apart from the average one (its concept, its style) is
        exaggerated. 1 leaves them as they are."""
        if self.guidance_scale == 1.0 or self.caption_centre is None:
            return sentence
        return self.caption_centre + self.guidance_scale * (sentence - self.caption_centre)

    @torch.no_grad()
    def generate_from(self, noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """The generator over given noise (N, Z) and sentence embeddings (N, D) -> (N, 3, H, W) in [-1, 1]:
        for interpolations between captions and walks through the noise (limner.evaluation.explain)."""
        if noise.ndim != 2 or sentence.ndim != 2 or noise.shape[0] != sentence.shape[0]:
            raise ConfigError(f"noise (N, Z) and sentence (N, D) must pair up, got {tuple(noise.shape)} and {tuple(sentence.shape)}")
        return self._run_generator(noise, sentence)

    def _run_generator(self, noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """The generator over (N, Z) noise and (N, D) sentences, at most max_batch_size at a time."""
        return torch.cat([
            self.generator(noise[i : i + self.max_batch_size], sentence[i : i + self.max_batch_size])
            for i in range(0, sentence.shape[0], self.max_batch_size)
        ])

    @property
    def resolution(self) -> int:
        return self.generator.config.resolution

    def save_pretrained(self, folder: str | Path) -> None:
        self.check_savable()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.generator.save_pretrained(folder / "generator")
        (folder / "text_encoder").mkdir(exist_ok=True)
        (folder / "text_encoder" / "config.json").write_text(json.dumps(self.text_encoder.config(), indent=2) + "\n")
        index = {
            "_class_name": type(self).__name__,
            "generator": ["limner", type(self.generator).__name__],
            "text_encoder": ["limner", type(self.text_encoder).__name__],
            "truncation": self.truncation,
            "guidance_scale": self.guidance_scale,
        }
        (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        if self.training_words is not None:
            (folder / TRAINING_WORDS).write_text(json.dumps(sorted(self.training_words)) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, backend: str = "torch") -> "TextToImagePipeline":
        """backend: "torch" (eager PyTorch), "compile" (torch.compile on the generator), "onnx"
        (onnxruntime over the graphs `limner export` wrote; see limner.pipelines.onnx_backend) or
        "onnx-int8" (the same with the generator quantised by `limner export --quantize`)."""
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        folder = Path(folder)
        if not (folder / MODEL_INDEX).is_file():
            raise ModelLoadError(f"{folder}: no {MODEL_INDEX}; is this a folder written by `limner train`?")
        index = read_json_object(folder / MODEL_INDEX)
        if index.get("_class_name", cls.__name__) != cls.__name__:
            raise ModelLoadError(f"{folder}: holds a {index.get('_class_name')!r}, not a {cls.__name__}")
        truncation = index.get("truncation", 1.0)
        if not isinstance(truncation, (int, float)):
            raise ModelLoadError(f"{folder / MODEL_INDEX}: truncation must be a number, got {truncation!r}")
        guidance_scale = index.get("guidance_scale", 1.0)
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
            raise ModelLoadError(f"{folder / MODEL_INDEX}: guidance_scale must be a number, got {guidance_scale!r}")
        generator = _generator_class(folder / "generator").from_pretrained(folder / "generator")
        text_encoder = load_text_encoder(read_json_object(folder / "text_encoder" / "config.json"))
        if text_encoder.dim != generator.config.text_dim:
            raise ModelLoadError(f"{folder}: text encoder gives {text_encoder.dim}-d embeddings, the generator wants {generator.config.text_dim}")
        checker = SafetyChecker.from_pretrained(folder / SAFETY_CHECKER) if (folder / SAFETY_CHECKER).is_dir() else None
        pipe = cls(generator, text_encoder, truncation=float(truncation), training_words=_read_training_words(folder),
                   safety_checker=checker, guidance_scale=float(guidance_scale))
        if backend == "compile":
            pipe.generator = torch.compile(generator)
        elif backend in ("onnx", "onnx-int8"):
            from limner.pipelines.onnx_backend import load_onnx_parts

            pipe.generator, pipe.text_encoder = load_onnx_parts(folder, pipe, int8=backend == "onnx-int8")
        return pipe


def named_code(prompt: str, names: Sequence[str]) -> int:
    """The index of the code name the prompt names as a whole phrase (the longest, so "fluent flat"
    wins over "fluent"; any case), or -1."""
    text = prompt.lower()
    for name in sorted(names, key=len, reverse=True):
        if re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", text):
            return names.index(name)
    return -1


def check_guidance_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale <= 10:
        raise ConfigError(f"guidance_scale must be a number from 0 to 10 (1: the caption as it is), got {scale!r}")
    return float(scale)


def check_truncation(truncation: float) -> float:
    """The noise's truncation, as the API takes it: above 0 and at most 10 (10 and above: none)."""
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not 0 < truncation <= 10:
        raise ConfigError(f"truncation must be a number above 0 and at most 10 (1: the model's noise cut at one standard deviation), "
                          f"got {truncation!r}")
    return float(truncation)


def _generator_class(folder: Path) -> type:
    """Generator or ConditionalVAE, by the class name in the folder's config.json."""
    from limner.models.vae import ConditionalVAE

    classes = {cls.__name__: cls for cls in (Generator, ConditionalVAE)}
    name = read_json_object(folder / "config.json").get("_class_name", "Generator")
    if name not in classes:
        raise ModelLoadError(f"{folder / 'config.json'}: unknown generator class {name!r}; known: {sorted(classes)}")
    return classes[name]


def _read_training_words(folder: Path) -> list[str] | None:
    """The saved training words (None for a model saved before limner kept them)."""
    path = folder / TRAINING_WORDS
    if not path.is_file():
        return None
    try:
        words = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise ModelLoadError(f"{path}: expected a JSON list of words")
    return words
