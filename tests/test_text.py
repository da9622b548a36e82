import pytest
import torch

from limner.text import BagOfWordsEncoder, CachedTextEncoder, HuggingFaceTextEncoder, load_text_encoder
from limner.text.huggingface import resolve_model_path


@pytest.fixture(scope="module")
def minilm():
    return HuggingFaceTextEncoder()


def test_minilm_gives_sentence_tokens_and_mask(minilm):
    out = minilm.encode(["a red circle", "a large purple triangle in the bottom right"])
    assert out.sentence.shape == (2, 384) and out.tokens.shape[0] == 2 and out.tokens.shape[2] == 384
    assert out.mask.dtype == torch.bool and out.mask.shape == out.tokens.shape[:2]
    assert out.mask[0].sum() < out.mask[1].sum()  # the shorter caption has fewer real tokens
    assert torch.allclose(out.sentence.norm(dim=1), torch.ones(2), atol=1e-5)
    assert minilm.pooling == "mean"


def test_minilm_knows_synonyms(minilm):
    big, large, blue = minilm.encode(["a big circle", "a large circle", "a blue circle"]).sentence
    assert big @ large > big @ blue


def test_hidden_layer_pools_an_earlier_state(minilm):
    embeddings = HuggingFaceTextEncoder(hidden_layer=0)
    captions = ["a big circle", "a large circle"]
    first, last = embeddings.encode(captions), minilm.encode(captions)
    assert first.sentence.shape == last.sentence.shape and not torch.allclose(first.sentence, last.sentence)
    assert embeddings.fingerprint != minilm.fingerprint  # never shares cache entries with the last layer
    rebuilt = load_text_encoder(embeddings.config())
    assert rebuilt.hidden_layer == 0 and torch.allclose(rebuilt.encode(captions).sentence, first.sentence)
    with pytest.raises(ValueError, match="hidden_layer"):
        HuggingFaceTextEncoder(hidden_layer=7)  # MiniLM has 6 layers: 0..6


def test_cache_never_encodes_a_caption_twice(minilm, tmp_path):
    cache = CachedTextEncoder(minilm, tmp_path)
    first = cache.sentence_table(["a", "b", "a"], progress=False)
    assert cache.encoded_count == 2
    again = CachedTextEncoder(minilm, tmp_path)  # a new process would read the shards
    second = again.sentence_table(["b", "a"], progress=False)
    assert again.encoded_count == 0
    assert torch.equal(second, first[[1, 0]])
    direct = minilm.encode(["a", "b"])
    cached = again.encode(["a", "b"])
    assert torch.allclose(cached.sentence, direct.sentence, atol=1e-6)
    assert torch.allclose(cached.tokens[cached.mask], direct.tokens[direct.mask], atol=1e-5)


def test_cache_is_keyed_by_encoder(tmp_path):
    one, two = BagOfWordsEncoder(["red", "blue"]), BagOfWordsEncoder(["red", "green"])
    CachedTextEncoder(one, tmp_path).sentence_table(["red"], progress=False)
    other = CachedTextEncoder(two, tmp_path)
    other.sentence_table(["red"], progress=False)
    assert other.encoded_count == 1


def test_bag_of_words_ignores_unknown_words():
    encoder = BagOfWordsEncoder.from_captions(["a red circle", "a blue square"])
    out = encoder.encode(["red circle", "big upper"])
    assert out.sentence.shape == (2, encoder.dim)
    assert out.sentence[1].abs().sum() == 0
    assert load_text_encoder(encoder.config()).vocabulary == encoder.vocabulary


def _tiny_model(folder, model_type):
    """A random tiny HF model of `model_type` that uses MiniLM's tokenizer."""
    import transformers

    source = resolve_model_path("all-MiniLM-L6-v2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    vocab = tokenizer.vocab_size
    if model_type == "gpt2":
        model = transformers.GPT2Model(transformers.GPT2Config(vocab_size=vocab, n_embd=16, n_layer=1, n_head=2))
    elif model_type == "t5":
        model = transformers.T5EncoderModel(transformers.T5Config(vocab_size=vocab, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2))
    else:
        model = transformers.CLIPTextModel(transformers.CLIPTextConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, eos_token_id=tokenizer.sep_token_id))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("model_type, pooling", [("gpt2", "last"), ("t5", "mean"), ("clip", "eos")])
def test_other_families_by_local_path(tmp_path, model_type, pooling):
    path = _tiny_model(tmp_path / model_type, model_type)
    encoder = HuggingFaceTextEncoder(str(path))
    assert encoder.pooling == pooling and encoder.dim == 16
    out = encoder.encode(["a red circle", "a much longer caption than the first one"])
    assert out.sentence.shape == (2, 16) and out.tokens.shape[2] == 16
    assert torch.isfinite(out.sentence).all()
    if pooling == "last":  # the last real token, not padding
        last = out.mask[0].sum() - 1
        unnormalised = HuggingFaceTextEncoder(str(path), normalize=False).encode(["a red circle", "a much longer caption than the first one"])
        assert torch.allclose(unnormalised.sentence[0], unnormalised.tokens[0, last])


def test_unknown_model_gets_a_clear_error(tmp_path):
    from limner.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="could not be loaded"):
        HuggingFaceTextEncoder(str(tmp_path / "no-such-model"))


def test_encoding_from_two_threads_at_once_keeps_every_batch_whole():
    """The server counts a prompt's tokens in a request handler while its batch worker encodes
    padded batches; the tokenizer's own padding state must not leak from one call into the other
    (it did: "Unable to create tensor" under load, 11 answers of 500 in benchmarks/serve_load.py)."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    from limner.text.anchored import AnchoredWordEncoder

    captions = ["a red circle", "a much longer caption about a small blue square in the top left corner"]
    minilm = AnchoredWordEncoder.from_captions(captions)  # the shapes preset's encoder: encoding is little but tokenizing

    def encode_many():
        return [minilm.encode(captions).sentence.shape for _ in range(2000)]

    def count_many():
        return [minilm.token_count("a red circle") for _ in range(4000)]

    with ThreadPoolExecutor(2) as pool:
        shapes, counts = pool.submit(encode_many), pool.submit(count_many)
        assert set(shapes.result()) == {(2, minilm.dim)} and set(counts.result()) == {5}
    assert pickle.loads(pickle.dumps(minilm)).encode(captions).sentence.shape == (2, minilm.dim)
