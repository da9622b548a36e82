"""What limner says about a prompt before drawing it: no descriptive word, no word the model was
trained on (other languages, scripts, emoji, new words), or longer than the encoder reads."""

import logging

import pytest
from fastapi.testclient import TestClient

from limner.errors import ConfigError
from limner.pipelines import TextToImagePipeline
from limner.serving import ServeConfig, create_app
from limner.text.prompts import NO_DESCRIPTIVE_WORDS, NO_KNOWN_WORDS, TRUNCATED, prompt_warnings, prompt_words, vocabulary_of
from tests.conftest import tiny_pipeline

KNOWN = frozenset(vocabulary_of(["a small red circle in the top left", "a large blue square"]))


def codes(prompt, known=KNOWN, **lengths):
    return [code for code, _ in prompt_warnings(prompt, known, **lengths)]


def test_words_are_lower_cased_in_any_script():
    assert prompt_words("A Big RED circle, top-left!") == ["a", "big", "red", "circle", "top", "left"]
    assert prompt_words("красный круг") == ["красный", "круг"]
    assert vocabulary_of(["b a", "a c"]) == ["a", "b", "c"]


def test_each_kind_of_odd_prompt_gets_its_warning():
    assert codes("a red circle") == []
    assert codes("please draw me a picture of a large crimson ball") == []  # "large" is known: not guessing
    assert codes("draw me a picture of the") == [NO_DESCRIPTIVE_WORDS]
    assert codes("a crimson ball") == [NO_KNOWN_WORDS]
    assert codes("красный круг") == [NO_KNOWN_WORDS]       # another script
    assert codes("🔴 ⬛") == [NO_DESCRIPTIVE_WORDS]           # emoji only: no word at all
    assert codes("a crimson ball", known=None) == []        # a model saved without its words: no check
    assert codes("a red circle", token_count=80, max_tokens=64) == [TRUNCATED]
    assert codes("a red circle", token_count=64, max_tokens=64) == []
    message = dict(prompt_warnings("a crimson ball", KNOWN))[NO_KNOWN_WORDS]
    assert "crimson, ball" in message and "guessing" in message


def test_the_pipeline_keeps_its_training_words_and_warns_while_drawing(tmp_path, caplog):
    pipe = tiny_pipeline()
    pipe.training_words = KNOWN
    pipe.save_pretrained(tmp_path / "model")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "model")
    assert loaded.training_words == KNOWN
    with caplog.at_level(logging.WARNING, logger="limner.pipelines.text_to_image"):
        images = loaded(["a crimson ball", "a red circle"], seed=0)
    assert len(images) == 2  # drawn all the same
    assert [record.getMessage() for record in caplog.records] == [dict(loaded.prompt_warnings("a crimson ball"))[NO_KNOWN_WORDS]]
    with pytest.raises(ConfigError, match="non-empty"):
        loaded(["   "])
    (tmp_path / "model" / "training_words.json").write_text('{"not": "a list"}')
    with pytest.raises(Exception, match="training_words.json: expected a JSON list"):
        TextToImagePipeline.from_pretrained(tmp_path / "model")


def test_the_server_sends_the_warning_codes_in_a_header():
    pipe = tiny_pipeline()
    pipe.training_words = KNOWN
    with TestClient(create_app({"tiny": pipe}, ServeConfig())) as client:
        guessed = client.post("/v1/images/generations", json={"prompt": "a crimson ball"})
        plain = client.post("/v1/images/generations", json={"prompt": "a red circle"})
    assert guessed.status_code == 200 and guessed.headers["X-Limner-Warning"] == NO_KNOWN_WORDS
    assert plain.status_code == 200 and "X-Limner-Warning" not in plain.headers


def test_prompt_phrases_are_the_prompt_and_its_runs_of_descriptive_words():
    from limner.text.policy import prompt_phrases

    assert prompt_phrases("a small handgun, twitter style") == [
        "a small handgun, twitter style", "handgun", "handgun twitter", "small", "small handgun", "small handgun twitter",
        "twitter"]


def test_denied_concepts_are_refused_in_other_words_by_the_server():
    from limner.text import HuggingFaceTextEncoder
    from limner.text.policy import ConceptPolicy

    policy = ConceptPolicy(["pistol", "bomb"], HuggingFaceTextEncoder("all-MiniLM-L6-v2"))
    assert policy.match("a handgun in the top left").concept == "pistol"  # a development-set rewording
    assert policy.match("pistol, twitter style").phrase == "pistol"
    assert policy.match("a red heart") is None and policy.match("a birthday cake") is None
    with pytest.raises(ConfigError, match="at least one denied concept"):
        ConceptPolicy(["  "], policy.encoder)
    config = ServeConfig(denied_concepts=("pistol",))
    with TestClient(create_app({"tiny": tiny_pipeline()}, config)) as client:
        refused = client.post("/v1/images/generations", json={"prompt": "a revolver"})
        allowed = client.post("/v1/images/generations", json={"prompt": "a red circle"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "content_policy_violation"
    assert allowed.status_code == 200
    with pytest.raises(ConfigError, match="denied_concept_threshold"):
        ServeConfig(denied_concepts=("pistol",), denied_concept_threshold=1.5)
