"""What a prompt says to a model, before it is encoded: its words against the words the model was
trained on, and its length against what the text encoder reads. A prompt that shares no word with
the training captions still draws a picture (the language model places it somewhere), but the model
is then guessing, and the user should know.

Defined behaviour for odd prompts: empty or blank ones are refused (ConfigError, by the pipeline);
prompts of only filler words, prompts with no known word (other languages, other scripts, emoji,
new words) and prompts longer than the encoder reads are drawn, each with a warning.
"""

from __future__ import annotations

import re
from typing import Iterable

from limner.text.filler import NOT_DESCRIPTIVE

_WORD = re.compile(r"\w+", re.UNICODE)


def prompt_words(text: str) -> list[str]:
    """Lower-cased words (letters, digits and underscores of any script) in order."""
    return _WORD.findall(text.lower())


def vocabulary_of(captions: Iterable[str]) -> list[str]:
    """The sorted distinct words of some captions (what a model saves of its training captions)."""
    return sorted({word for caption in captions for word in prompt_words(caption)})


# warning codes: short, ASCII and free of the prompt's own words (the server sends them as a header)
NO_DESCRIPTIVE_WORDS = "no-descriptive-words"
NO_KNOWN_WORDS = "no-known-words"
TRUNCATED = "truncated"


def prompt_warnings(prompt: str, known_words: frozenset[str] | None, *, token_count: int | None = None,
                    max_tokens: int | None = None) -> list[tuple[str, str]]:
    """(code, plain-language message) for each thing worth telling about one prompt; [] when none.
    known_words: the model's training words (None: unknown, no check); token_count and max_tokens:
    the prompt's length in the encoder's tokens and how many the encoder reads (None: not checked)."""
    warnings = []
    content = [word for word in prompt_words(prompt) if word not in NOT_DESCRIPTIVE]
    if not content:
        warnings.append((NO_DESCRIPTIVE_WORDS, f"{prompt!r} has no words that describe a picture (only words like 'a', 'the', "
                                               "'draw'): the model draws from an average of what it knows"))
    elif known_words is not None and not any(word in known_words for word in content):
        shown = ", ".join(content[:5]) + (", ..." if len(content) > 5 else "")
        warnings.append((NO_KNOWN_WORDS, f"{prompt!r}: none of its words ({shown}) occur in the model's training captions, "
                                         "so the model is guessing"))
    if token_count is not None and max_tokens is not None and token_count > max_tokens:
        warnings.append((TRUNCATED, f"{prompt!r} is {token_count} tokens long; the text encoder reads only the first {max_tokens}"))
    return warnings
