"""Words that ask for a picture without saying what is in it.

People type whole sentences ("could you please draw ... for me"), where a caption names
only what the picture shows. Given to anchored word pooling as known words that weigh
nothing (`text_anchor_filler`), these words, and the new words that lie nearest them, stop
pulling a sentence towards whichever training word happens to lie nearest ("see" lies
nearest "red" among the shapes captions' words).

The list is English function words, request verbs and nouns for a picture or a part of one.
It leaves out every word that could name what a picture shows or where: no colours, sizes,
shapes, places, directions or counts. A word the training captions use keeps its own weight.
"""

from __future__ import annotations

FUNCTION_WORDS = (
    "i", "me", "my", "you", "your", "we", "us", "our", "it", "its", "they", "them", "their",
    "this", "that", "these", "those", "there", "here", "what", "which", "who", "how", "where",
    "an", "some", "any", "of", "on", "at", "to", "for", "from", "with", "by", "as", "into",
    "and", "or", "but", "so", "then", "if", "is", "are", "was", "were", "be", "been", "being", "am",
    "do", "does", "did", "have", "has", "had", "will", "would", "can", "could", "should", "may",
    "might", "must", "shall", "let", "just", "also", "really", "very", "quite", "rather", "kind",
    "sort", "maybe", "perhaps", "now", "please", "thanks", "thank", "hello", "hi", "ok", "okay",
)
REQUEST_VERBS = (
    "draw", "paint", "sketch", "render", "make", "create", "generate", "produce", "show", "give",
    "put", "place", "want", "need", "like", "see", "depict", "illustrate", "display", "add", "get",
    "drawn", "painted", "showing", "shows", "shown", "placed", "located", "sitting", "sits",
    "appears", "containing", "featuring", "having",
)
PICTURE_NOUNS = (
    "picture", "image", "drawing", "painting", "illustration", "icon", "photo", "scene", "canvas",
    "frame", "background", "area", "part", "region", "spot", "side", "corner", "edge", "object",
    "shape", "thing", "item", "figure",
)
PROMPT_FILLER = tuple(dict.fromkeys(FUNCTION_WORDS + REQUEST_VERBS + PICTURE_NOUNS))
# The words a prompt warning and the prompt policy drop before they look for what a prompt
# describes (limner.text.prompts, limner.text.policy); the policy's threshold was chosen with this
# list, so it stays as it was measured. It holds the caption frame too ("a", "the", "in", "style").
NOT_DESCRIPTIVE = frozenset("""
a an the of in on at to into onto with without and or but for by from as is are be been being it its this that these those
there here some any very quite really just please can could would will you me i my we our your draw drawing make show give
create generate render paint picture image photo illustration icon emoji of style
""".split())


def filler_tokens(tokenizer, words=PROMPT_FILLER, known=()) -> list[str]:
    """The filler words the tokenizer reads as one token each, less the `known` tokens (the
    training captions' own words keep their weight). A word split into pieces is left out: its
    pieces ("##ing") would absorb the pieces of other words."""
    known = set(known)
    tokens = []
    for word in words:
        pieces = tokenizer.tokenize(word)
        if len(pieces) == 1 and pieces[0] not in known and pieces[0] != tokenizer.unk_token:
            tokens.append(pieces[0])
    return list(dict.fromkeys(tokens))
