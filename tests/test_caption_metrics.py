import math

import pytest

from limner.metrics.captions import cider_d, corpus_bleu, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A big, Yellow circle: upper-right!") == ["a", "big", "yellow", "circle", "upper", "right"]


def test_bleu_by_hand():
    # unigrams 5/6, bigrams 3/5, trigrams 1/4, 4-grams 0/3; equal lengths, so no brevity penalty
    scores = corpus_bleu(["the cat sat on the mat"], [["the cat is on the mat"]])
    assert math.isclose(scores["bleu1"], 5 / 6)
    assert math.isclose(scores["bleu2"], math.sqrt(0.5))
    assert math.isclose(scores["bleu3"], 0.5)
    assert scores["bleu4"] == 0.0


def test_bleu_clips_repeats_and_penalises_short_candidates():
    assert corpus_bleu(["the the the"], [["the cat"]])["bleu1"] == pytest.approx(1 / 3)
    # "the cat" against a 4-word reference: precision 1, brevity penalty exp(1 - 4/2)
    assert corpus_bleu(["the cat"], [["the cat sat down"]])["bleu1"] == pytest.approx(math.exp(-1.0))


def test_bleu_of_a_perfect_corpus_is_one():
    scores = corpus_bleu(["a large red circle in the top left"], [["a large red circle in the top left", "something else"]])
    assert all(v == pytest.approx(1.0) for v in scores.values())


def test_cider_d_by_hand():
    # "a" is in every image's references, so its idf is 0; the other n-grams have idf log 2.
    # Exact match: cosine 1 for n = 1, 2, 3 and no 4-grams: (1 + 1 + 1 + 0) / 4 * 10 = 7.5.
    refs = [["a red circle"], ["a blue square"]]
    result = cider_d(["a red circle", "a blue square"], refs)
    assert result["per_image"] == pytest.approx([7.5, 7.5]) and result["cider_d"] == pytest.approx(7.5)
    swapped = cider_d(["a blue square", "a red circle"], refs)
    assert swapped["cider_d"] == pytest.approx(0.0)


def test_cider_d_penalises_length_difference():
    refs = [["a red circle"], ["a blue square"]]
    longer = cider_d(["a red circle red circle", "a blue square"], refs)["per_image"][0]
    assert 0 < longer < 7.5


def test_metrics_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match="2 candidates but 1"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="non-empty list"):
        cider_d(["a"], ["a"])
