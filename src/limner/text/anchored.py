"""A pretrained language model's word embeddings, anchored to the training captions' words.

Each token of a caption is looked up in the language model's input embedding table
and replaced by a softmax mix of the training vocabulary's embeddings, weighted by
cosine similarity over a temperature: a word the training captions use maps to
itself, a new word ("big") to the known words the language model places nearest
("large"). The caption vector is the mean of its anchored tokens weighted by inverse
document frequency over the distinct training captions (a word every caption uses,
like "a", weighs 0) and by how decisively it points at one known word: a new word
the language model places about as near two known words ("size": small 0.43, large
0.43) says nothing about which, so its weight grows with the gap between its two
nearest known words and is full from `margin` up. With a relevance `floor`, a new word whose
nearest known word lies under it in cosine similarity weighs nothing: "see" lies nearest "red"
but only at 0.21, where a synonym such as "big" lies at 0.59 from "large", so the filler of
a whole sentence no longer pulls the caption towards a colour or a place. The result is
L2-normalised.

With a lexicon (`lexicon`: {other name: known word}, limner.text.lexicon, from WordNet and
limner.text.colour_names, from the xkcd colour survey), a
prompt's other names for known words are first read as those words ("a maroon orb" -> "a red
orb"): for names the language model's word table places far from what they mean. With
`modifiers`, a new word written right before a known one that qualifies a third is dropped
("a tomato red circle" -> "a red circle").

So a caption reworded with synonyms and a new word order lands where the training
caption it means does, and a new composition of known words is read exactly. The
price: the vector ignores word order, so relations between several objects ("a red
circle left of a blue square") are lost; for those keep the model's own pooling.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from limner.errors import ConfigError, ModelLoadError
from limner.text.base import TextEmbeddings, TextEncoder
from limner.text.filler import filler_tokens
from limner.text.colour_names import nearest_colour_names
from limner.text.definitions import defined_names
from limner.text.lexicon import DEFAULT_DEPTH, DEFAULT_SENSES, WordNet, general_shape_names, other_names, rewrite, without_modifiers
from limner.text.huggingface import DEFAULT_TEXT_ENCODER, resolve_model_path

DEFAULT_TEMPERATURE = 0.02
DEFAULT_MARGIN = 0.15
DEFAULT_FLOOR = 0.0  # off: earlier models read as before


def inverse_document_frequencies(tokenizer, captions: Iterable[str]) -> dict[str, float]:
    """log(N / df) per token over the N distinct captions: 0 for a token every caption uses."""
    distinct = sorted(set(captions))
    rows = tokenizer(distinct, add_special_tokens=False)["input_ids"] if distinct else []
    counts = Counter(token for row in rows for token in set(row))
    idf = {tokenizer.convert_ids_to_tokens(token): math.log(len(distinct) / n) for token, n in sorted(counts.items())}
    if not any(value > 0 for value in idf.values()):
        raise ConfigError(f"anchored word pooling needs captions that differ in their words; got {len(distinct)} distinct caption(s)")
    return idf


def anchored_sentences(words: torch.Tensor, mask: torch.Tensor, anchors: torch.Tensor, idf: torch.Tensor, *,
                       temperature: float, margin: float, floor: float = DEFAULT_FLOOR) -> tuple[torch.Tensor, torch.Tensor]:
    """words (B, T, D) input embeddings, mask (B, T), anchors (V, D) the vocabulary's embeddings,
    idf (V,) -> sentence (B, D) unit vectors, anchored tokens (B, T, D)."""
    similarity = F.normalize(words, dim=-1) @ F.normalize(anchors, dim=-1).T  # (B, T, V)
    return mixed_anchors(similarity, mask, anchors, idf, temperature=temperature, margin=margin, floor=floor)


def mixed_anchors(similarity: torch.Tensor, mask: torch.Tensor, anchors: torch.Tensor, idf: torch.Tensor, *,
                  temperature: float, margin: float, floor: float = DEFAULT_FLOOR) -> tuple[torch.Tensor, torch.Tensor]:
    """similarity (B, T, V) of each token to each known word, mask (B, T), anchors (V, D) the known
    words' input embeddings, idf (V,) -> sentence (B, D) unit vectors, anchored tokens (B, T, D):
    each token a softmax mix of the known words, weighted by rarity and decisiveness, and by nothing
    where its nearest known word lies under `floor`."""
    weights = (similarity / temperature).softmax(-1)
    tokens = weights @ anchors  # (B, T, D)
    nearest = similarity.topk(min(2, similarity.shape[-1]), dim=-1).values  # (B, T, 2)
    gap = nearest[..., 0] - nearest[..., -1] if nearest.shape[-1] == 2 else torch.ones_like(nearest[..., 0])
    decisiveness = (gap / margin).clamp(max=1.0) if margin > 0 else torch.ones_like(gap)
    relevant = nearest[..., 0] >= floor
    importance = (weights @ idf) * decisiveness * (mask & relevant).to(similarity.dtype)  # (B, T)
    sentence = (tokens * importance.unsqueeze(-1)).sum(1) / importance.sum(1, keepdim=True).clamp(min=1e-8)
    return F.normalize(sentence, dim=-1), tokens


class AnchoredWordEncoder(TextEncoder):
    """>>> enc = AnchoredWordEncoder.from_captions(["a large red circle", "a small blue square"])
    >>> enc.encode(["a big red circle"]).sentence   # close to "a large red circle"

    context_layer N: each token is matched to the known words by its state at the language
    model's hidden layer N (0: the embedding layer) against each known word's mean state over the
    training captions (`context_anchors`), instead of by its input embedding alone; a known word
    stays itself wherever it stands. The caption vector is still the mix of the known words' input
    embeddings, so a training caption reads as before, but a new word is read in its sentence
    ("box" alone lies nearest "bottom"; in "a blue box in the top right", nearer "square").
    None: the input embeddings (the earlier behaviour).
    """

    kind = "anchored_words"

    def __init__(self, name_or_path: str = DEFAULT_TEXT_ENCODER, *, vocabulary: dict[str, float],
                 temperature: float = DEFAULT_TEMPERATURE, margin: float = DEFAULT_MARGIN, max_length: int = 64,
                 context_layer: int | None = None, context_anchors: str | None = None, floor: float = DEFAULT_FLOOR,
                 lexicon: dict[str, str] | None = None, modifiers: bool = False) -> None:
        from transformers import AutoModel, AutoTokenizer

        if temperature <= 0:
            raise ConfigError(f"anchor temperature must be positive, got {temperature}")
        if margin < 0:
            raise ConfigError(f"anchor margin must be 0 (off) or positive, got {margin}")
        if not 0 <= floor < 1:
            raise ConfigError(f"anchor floor must be 0 (off) or a cosine similarity under 1, got {floor}")
        if not vocabulary:
            raise ConfigError("anchored word pooling needs a non-empty vocabulary (the training captions' tokens)")
        path = resolve_model_path(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path).eval()
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"text encoder {name_or_path!r} could not be loaded ({err}); "
                                 "give a local folder or a hub id that is in your Hugging Face cache") from err
        ids = self.tokenizer.convert_tokens_to_ids(list(vocabulary))
        unknown = [token for token, i in zip(vocabulary, ids) if i is None or (i == self.tokenizer.unk_token_id and token != self.tokenizer.unk_token)]
        if unknown:
            raise ModelLoadError(f"the tokenizer of {name_or_path!r} lacks the vocabulary's tokens {unknown[:5]}")
        self.name_or_path, self.temperature, self.margin, self.max_length = name_or_path, float(temperature), float(margin), max_length
        self.floor = float(floor)
        self.vocabulary = dict(vocabulary)
        self.table = model.get_input_embeddings().weight.detach().float()  # (vocab, D)
        self.vocabulary_ids = torch.tensor(ids)
        self.anchors = self.table[self.vocabulary_ids]  # (V, D)
        self.idf = torch.tensor(list(vocabulary.values()), dtype=torch.float32)  # (V,)
        self.dim = self.table.shape[1]
        self.context_layer = check_context_layer(context_layer, model.config.num_hidden_layers)
        self.model = model if context_layer is not None else None  # only reading in context needs the layers
        self.context_anchors = None if context_anchors is None else decode_anchors(context_anchors, self.anchors.shape)
        self.lexicon = check_lexicon(lexicon or {}, self.vocabulary)
        self.modifiers = bool(modifiers)

    @classmethod
    def from_captions(cls, captions: Iterable[str], name_or_path: str = DEFAULT_TEXT_ENCODER, *,
                      temperature: float = DEFAULT_TEMPERATURE, margin: float = DEFAULT_MARGIN,
                      context_layer: int | None = None, floor: float = DEFAULT_FLOOR,
                      filler: Iterable[str] = (), lexicon: WordNet | None = None, lexicon_depth: int = DEFAULT_DEPTH,
                      lexicon_senses: int = DEFAULT_SENSES, modifiers: bool = False,
                      colour_names: bool = False, general_shapes: bool = False,
                      definitions: bool = False, definition_rounds: int = 1) -> "AnchoredWordEncoder":
        """filler: words that ask for a picture without saying what is in it (limner.text.filler),
        known words that weigh nothing, so that the filler of a whole sentence, and new words
        nearest it, no longer pull the caption towards a training word. lexicon: WordNet, whose
        other names for the known words (limner.text.lexicon.other_names) are read as those words.
        modifiers: a new word that qualifies a known word is dropped (lexicon.without_modifiers).
        colour_names: the xkcd survey's colour names read as the known colour word nearest them in
        colour (limner.text.colour_names); where WordNet names the same word, the colour decides.
        general_shapes (with a lexicon): a general name WordNet places above a single known shape is
        read as that shape ("oval" -> circle; lexicon.general_shape_names). definitions (with a lexicon):
        a noun whose WordNet definition names a single known shape or colour is read as it ("box" ->
        square; limner.text.definitions), wherever no other reading names the same word; in
        definition_rounds rounds (2: "crate", a kind of box, read as square too)."""
        from limner.text.caption_vocabulary import load_tokenizer

        captions = sorted(set(captions))
        tokenizer = load_tokenizer(name_or_path)
        vocabulary = inverse_document_frequencies(tokenizer, captions)
        filler = filler_tokens(tokenizer, tuple(filler), known=vocabulary)
        if filler and context_layer is not None:
            raise ConfigError("filler words need anchored pooling by input embeddings (no context layer): "
                              "the training captions never use them, so they have no state in context to anchor to")
        vocabulary.update(dict.fromkeys(filler, 0.0))
        targets = [token for token, weight in vocabulary.items() if weight > 0 and token.isalpha()]
        table = {}
        if (general_shapes or definitions) and lexicon is None:
            raise ConfigError("general shape names and definitions are read from WordNet: give a lexicon too")
        if definitions:
            table.update(defined_names(lexicon, targets, rounds=definition_rounds))
        if general_shapes:
            table.update(general_shape_names(lexicon, targets))
        if lexicon is not None:
            table.update(other_names(lexicon, targets, depth=lexicon_depth, senses=lexicon_senses))
        if colour_names:
            table.update(nearest_colour_names(targets))
        table = {name: word for name, word in table.items() if name not in vocabulary}
        encoder = cls(name_or_path, vocabulary=vocabulary, temperature=temperature, margin=margin,
                      context_layer=context_layer, floor=floor, lexicon=table, modifiers=modifiers)
        if context_layer is not None:
            encoder.context_anchors = encoder.mean_states(captions)
        return encoder

    @torch.no_grad()
    def token_states(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids (B, T), mask (B, T) of the caption's own tokens, states (B, T, D) at context_layer):
        the model reads the caption whole, with its special tokens, which the mask then leaves out."""
        batch = self.tokenizer(captions, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        ids = batch["input_ids"]
        special = torch.tensor(self.tokenizer.all_special_ids)
        mask = batch["attention_mask"].bool() & ~torch.isin(ids, special)
        states = self.model(**batch, output_hidden_states=True).hidden_states[self.context_layer].float()
        return ids, mask, states

    def mean_states(self, captions: list[str], batch_size: int = 256) -> torch.Tensor:
        """(V, D): each known word's mean state at context_layer over the captions that use it."""
        vocabulary_ids = self.vocabulary_ids
        sums, counts = torch.zeros(len(vocabulary_ids), self.dim), torch.zeros(len(vocabulary_ids))
        for start in range(0, len(captions), batch_size):
            ids, mask, states = self.token_states(captions[start:start + batch_size])
            hits = (ids[..., None] == vocabulary_ids) & mask[..., None]  # (B, T, V)
            sums += torch.einsum("btv,btd->vd", hits.float(), states)
            counts += hits.sum((0, 1))
        if (counts == 0).any():
            missing = [token for token, n in zip(self.vocabulary, counts.tolist()) if n == 0]
            raise ConfigError(f"anchored pooling in context: the captions never use the known words {missing[:5]}")
        return sums / counts[:, None]

    def reading(self, caption: str) -> str:
        """The caption as the encoder reads it: with the lexicon's names replaced by their known words
        and, with modifiers on, without the new words that qualify a known one."""
        caption = rewrite(caption, self.lexicon)[0] if self.lexicon else caption
        return without_modifiers(caption, self.word_weight)[0] if self.modifiers else caption

    def word_weight(self, word: str) -> float | None:
        """A word's weight in the vocabulary (its tokens' largest), or None when a token of it is new."""
        tokens = self.tokenizer.tokenize(word)
        if not tokens or any(token not in self.vocabulary for token in tokens):
            return None
        return max(self.vocabulary[token] for token in tokens)

    def _encode(self, captions: list[str]) -> TextEmbeddings:
        captions = [self.reading(caption) for caption in captions]
        if self.context_layer is not None:
            if self.context_anchors is None:
                raise ModelLoadError("anchored pooling in context needs the known words' context anchors: "
                                     "build the encoder with from_captions (the training captions)")
            ids, mask, states = self.token_states(captions)
            in_context = F.normalize(states, dim=-1) @ F.normalize(self.context_anchors, dim=-1).T  # (B, T, V)
            # a known word stays itself wherever it stands (its state moves with the sentence's form, and the
            # training captions show one form); only a new word is read by its sentence
            own = F.normalize(self.table[ids], dim=-1) @ F.normalize(self.anchors, dim=-1).T
            known = torch.isin(ids, self.vocabulary_ids)[..., None]
            similarity = torch.where(known, own, in_context)
            sentence, tokens = mixed_anchors(similarity, mask, self.anchors, self.idf, temperature=self.temperature,
                                             margin=self.margin, floor=self.floor)
            return TextEmbeddings(sentence=sentence, tokens=tokens, mask=mask)
        batch = self.tokenizer(captions, padding=True, truncation=True, max_length=self.max_length,
                               add_special_tokens=False, return_tensors="pt")
        mask = batch["attention_mask"].bool()  # (B, T)
        words = self.table[batch["input_ids"]]  # (B, T, D)
        sentence, tokens = anchored_sentences(words, mask, self.anchors, self.idf,
                                              temperature=self.temperature, margin=self.margin, floor=self.floor)
        return TextEmbeddings(sentence=sentence, tokens=tokens, mask=mask)

    def config(self) -> dict[str, Any]:
        config = {"kind": self.kind, "name_or_path": self.name_or_path, "temperature": self.temperature,
                  "margin": self.margin, "max_length": self.max_length, "vocabulary": self.vocabulary}
        if self.floor > 0:  # (absent when off, as the two below: earlier models' configs read back unchanged)
            config["floor"] = self.floor
        if self.context_layer is not None:
            config["context_layer"] = self.context_layer
            config["context_anchors"] = encode_anchors(self.context_anchors)
        if self.lexicon:
            config["lexicon"] = self.lexicon
        if self.modifiers:
            config["modifiers"] = True
        return config


def check_lexicon(lexicon: dict[str, str], vocabulary: dict[str, float]) -> dict[str, str]:
    """{other name: known word}, each known word one of the vocabulary's and no name a known word."""
    if not isinstance(lexicon, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in lexicon.items()):
        raise ModelLoadError("the text encoder's lexicon must map names (strings) to known words (strings)")
    strays = sorted({word for word in lexicon.values() if word not in vocabulary})
    if strays:
        raise ModelLoadError(f"the text encoder's lexicon reads names as words the vocabulary lacks: {strays[:5]}")
    return {name: word for name, word in lexicon.items() if name not in vocabulary}


def check_context_layer(layer: int | None, layers: int) -> int | None:
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= layers):
        raise ConfigError(f"the context layer must be 0 (the embedding layer) to {layers} (the last), got {layer!r}")
    return layer


def encode_anchors(anchors: torch.Tensor) -> str:
    """(V, D) float -> base64 of little-endian float16: compact enough for the encoder's JSON config."""
    return base64.b64encode(anchors.to(torch.float16).numpy().astype("<f2").tobytes()).decode("ascii")


def decode_anchors(text: str, shape: torch.Size) -> torch.Tensor:
    try:
        values = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f2")
    except (ValueError, TypeError) as err:
        raise ModelLoadError(f"the text encoder's context_anchors are not valid base64 ({err})") from err
    if values.size != shape[0] * shape[1]:
        raise ModelLoadError(f"the text encoder's context_anchors hold {values.size} values, the vocabulary needs {shape[0]} x {shape[1]}")
    return torch.from_numpy(values.astype(np.float32).reshape(tuple(shape)))
