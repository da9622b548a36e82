"""Which hidden layer of the text encoder carries the shapes attributes over to new wording?

For each hidden state of all-MiniLM-L6-v2 (0 = embedding layer, 6 = last), mean-pooled
over real tokens: fit a ridge-regression linear probe per attribute on the 144
training captions, and report the all-four accuracy of the probe on the 36
held-out captions and on the 180 paraphrases of benchmarks/shapes_gan.py. A probe
that fails says the information is not linearly there for a generator to use.

It also prints, on the training captions' 12 main directions (what a generator
with text_components 12 sees), how far a paraphrase lands from its own canonical
caption, as a fraction of the mean distance between neighbouring training captions.

Then the same for anchored word pooling (limner.text.AnchoredWordEncoder) over a
grid of its temperature and margin, on a development set of rewordings with none
of the benchmark's new words ("giant", "petite", "top-left corner", "centre") and
on the benchmark's paraphrases: the defaults (0.02, 0.15) are the development
set's best.

Last, anchored pooling read in context (each word matched to the known words by its state at
a hidden layer, see limner.text.anchored) at every layer, on benchmarks/wording.py's
development set of whole sentences and everyday colour words.

    python benchmarks/text_probe.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from shapes_gan import development_paraphrases, paraphrases  # noqa: E402
from wording import wording_sets  # noqa: E402

from limner.data import shapes  # noqa: E402
from limner.text import AnchoredWordEncoder, HuggingFaceTextEncoder  # noqa: E402

RIDGE = 100.0
TEMPERATURES = (0.1, 0.05, 0.02)
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2)
def probe_accuracy(train_x: torch.Tensor, test_x: torch.Tensor, train: list, test: list) -> dict[str, float]:
    mean = train_x.mean(0)
    spread = (train_x - mean).pow(2).mean().sqrt()
    train_x, test_x = (train_x - mean) / spread, (test_x - mean) / spread
    all_right = torch.ones(len(test), dtype=torch.bool)
    result = {}
    for attribute in shapes.ATTRIBUTES:
        values = sorted({getattr(c, attribute) for c in train})
        targets = torch.tensor([[getattr(c, attribute) == v for v in values] for c in train]).float()
        weights = torch.linalg.solve(train_x.T @ train_x + RIDGE * torch.eye(train_x.shape[1]), train_x.T @ (targets - targets.mean(0)))
        predicted = (test_x @ weights).argmax(1).tolist()
        right = torch.tensor([values[p] == getattr(c, attribute) for p, c in zip(predicted, test)])
        result[attribute] = float(right.float().mean())
        all_right &= right
    result["all"] = float(all_right.float().mean())
    return result


def paraphrase_shift(train_x: torch.Tensor, para_x: torch.Tensor, canonical_x: torch.Tensor, components: int = 12) -> float:
    """Mean distance from each paraphrase to its canonical caption over the mean distance from each
    training caption to its nearest neighbour, both on the training captions' main directions."""
    mean = train_x.mean(0)
    _, _, directions = torch.linalg.svd(train_x - mean, full_matrices=False)
    project = lambda x: (x - mean) @ directions[:components].T  # noqa: E731
    train = project(train_x)
    spacing = (torch.cdist(train, train) + torch.eye(len(train)) * 1e9).min(1).values.mean()
    return float((project(para_x) - project(canonical_x)).norm(dim=1).mean() / spacing)


def scores_row(embed, train: list, held_out: list, para: list) -> str:
    train_x = embed([c.caption for c in train])
    held = probe_accuracy(train_x, embed([c.caption for c in held_out]), train, held_out)
    para_scores = probe_accuracy(train_x, embed([p for p, _ in para]), train, [c for _, c in para])
    detail = " / ".join(f"{para_scores[a]:.3f}" for a in shapes.ATTRIBUTES)
    shift = paraphrase_shift(train_x, embed([p for p, _ in para]), embed([c.caption for _, c in para]))
    return f"{held['all']:>8.3f}  {para_scores['all']:>10.3f}   {detail}   {shift:>13.2f}"


def main() -> None:
    train, held_out = shapes.train_compositions(), shapes.held_out_compositions()
    para, development = paraphrases(), development_paraphrases()
    print(f"ridge {RIDGE}; all-four accuracy of a linear probe trained on the {len(train)} training captions")
    print(f"{'layer':>5}  {'held-out':>8}  {'paraphrase':>10}   paraphrase colour/shape/size/position   shift/spacing"
          "   development shift")
    for layer in range(7):
        encoder = HuggingFaceTextEncoder(hidden_layer=layer)
        embed = lambda captions: encoder.encode(captions).sentence  # noqa: E731
        development_shift = paraphrase_shift(embed([c.caption for c in train]), embed([p for p, _ in development]),
                                             embed([c.caption for _, c in development]))
        print(f"{layer:>5}  " + scores_row(embed, train, held_out, para) + f"   {development_shift:>17.2f}")
    for name, rewordings in (("development rewordings", development), ("benchmark paraphrases", para)):
        print(f"\nanchored word pooling, {name} ({len(rewordings)}, e.g. {rewordings[1][0]!r})")
        print(f"{'temp':>5} {'margin':>6}  {'held-out':>8}  {'paraphrase':>10}   paraphrase colour/shape/size/position   shift/spacing")
        for temperature in TEMPERATURES:
            for margin in MARGINS:
                encoder = AnchoredWordEncoder.from_captions([c.caption for c in train], temperature=temperature, margin=margin)
                row = scores_row(lambda captions: encoder.encode(captions).sentence, train, held_out, rewordings)
                print(f"{temperature:>5} {margin:>6}  {row}")
    wording = wording_sets("development")
    for name, rewordings in wording.items():
        print(f"\nanchored word pooling read in context (context layer; none: input embeddings), wording development set, "
              f"{name} ({len(rewordings)}, e.g. {rewordings[1][0]!r})")
        print(f"{'layer':>5}  {'held-out':>8}  {'rewording':>10}   rewording colour/shape/size/position   shift/spacing")
        for layer in (None, *range(7)):
            encoder = AnchoredWordEncoder.from_captions([c.caption for c in train], context_layer=layer)
            row = scores_row(lambda captions: encoder.encode(captions).sentence, train, held_out, rewordings)
            print(f"{'none' if layer is None else layer:>5}  {row}")


if __name__ == "__main__":
    main()
