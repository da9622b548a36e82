import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from tests.emoji_fixture import fixture_tarballs, openmoji_tarball, svg_bytes
from limner.cli import main
from limner.data import ImageFolder
from limner.data.emoji_sources import (
    PACKAGES, Package, SourceImage, fetch_tarballs, normalize_codepoints, read_all, slugify,
)
from limner.data.emoji_styles import (
    UNSEEN_COMBINATION, UNSEEN_CONCEPT, Concept, assign_splits, build_emoji_styles, join_concepts, tag_captions,
    wording_test_tag,
)
from limner.errors import ConfigError, DataError, DependencyError
from limner.training.data import load_training_data
from limner.training.gan_config import GANTrainConfig


@pytest.fixture(scope="module")
def tarballs(tmp_path_factory):
    return fixture_tarballs(tmp_path_factory.mktemp("npm"))


@pytest.fixture(scope="module")
def built(tarballs, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "emoji-styles"
    info = build_emoji_styles(out, resolution=32, tarballs=tarballs, workers=1, progress=False)
    return out, info


def _records(folder: Path) -> list[dict]:
    rows = []
    for split in ("train", "test"):
        rows += [json.loads(line) for line in (folder / split / "metadata.jsonl").read_text().splitlines()]
    return rows


def test_codepoints_are_normalised():
    assert normalize_codepoints("2764-fe0f") == "2764"
    assert normalize_codepoints("1f468-200d-1F4bb") == "1F468-200D-1F4BB"
    assert normalize_codepoints("0023-FE0F-20E3") == "0023-20E3"


def test_slugs_follow_fluent_file_names():
    assert slugify("A button (blood type)") == "a-button-blood-type"
    assert slugify("piñata") == "pinata"
    assert slugify("keycap: *") == "keycap-asterisk"
    assert slugify("flag: Côte d’Ivoire") == "flag-cote-divoire"


def test_join_matches_every_set_on_codepoints(tarballs):
    images, names, unmatched = read_all(tarballs)
    styles = Counter(image.codepoints for image in images)
    assert styles["2764"] == 6  # the heart in all six styles: FE0F dropped before joining
    assert styles["1F917"] == 6  # Fluent's older name "hugging face" found through the alias table
    assert styles["1F9D1"] == 6  # Fluent's "person-default" is the base; its tone file is left out
    assert styles["1F1EA-1F1EC"] == 3  # no flags in Fluent
    assert "1F9B0" not in styles and "E000" not in styles  # components and OpenMoji's own extras
    assert names["2764"] == "red heart" and names["1F917"] == "smiling face with open hands"
    assert unmatched == ["package/icons/modern/no-such-emoji.svg"]


def test_skin_tones_are_behind_a_flag(tarballs):
    images, _, _ = read_all(tarballs, skin_tones=True)
    toned = Counter(image.style for image in images if image.codepoints == "1F9D1-1F3FB")
    assert toned == {"google": 1, "twitter": 1, "openmoji": 1, "fluent": 1}


def test_corpus_captions_columns_and_licences(built):
    out, info = built
    rows = _records(out)
    assert info["concepts"] == 5 and info["concepts_in_all_styles"] == 4
    assert info["images_per_style"] == {"google": 5, "twitter": 5, "openmoji": 5, "fluent": 4, "fluent flat": 4,
                                        "fluent high contrast": 4}
    assert len(rows) == sum(info["splits"].values()) == 27
    heart = next(r for r in rows if r["codepoints"] == "2764" and r["style"] == "twitter")
    assert heart["text"] == ["red heart, twitter style", "red heart"]
    assert heart["concept"] == "red heart" and heart["category"] == "Smileys & Emotion"
    assert heart["license"] == "CC-BY-4.0" and heart["source"] == "emoji-datasource-twitter@16.0.0"
    assert heart["tags"] == ["red", "fixture"]
    licences = {r["style"]: r["license"] for r in rows}
    assert licences == {"google": "Apache-2.0", "twitter": "CC-BY-4.0", "openmoji": "CC-BY-SA-4.0", "fluent": "MIT",
                        "fluent flat": "MIT", "fluent high contrast": "MIT"}
    readme = (out / "README.md").read_text()
    assert "CC-BY-SA-4.0" in readme and "Apache-2.0" in readme and "Twemoji" in readme
    recorded = json.loads((out / "dataset_info.json").read_text())["packages"]
    assert recorded["openmoji"]["sha256"] == PACKAGES["openmoji"].sha256


def test_images_are_white_backed_squares_at_the_resolution(built):
    out, _ = built
    folder = ImageFolder(out, "train")
    images = folder.load_images(32, progress=False)
    assert images.shape[1:] == (3, 32, 32)
    assert (images[:, :, 0, 0] == 255).all()  # transparency composited over white
    assert len({tuple(image.flatten().tolist()[:64]) for image in images}) > 3  # content, not blanks


def _concepts(count: int, styles: int = 6) -> list[Concept]:
    names = ["google", "twitter", "openmoji", "fluent", "fluent flat", "fluent high contrast"][:styles]
    return [Concept(f"{0x1F600 + i:X}", f"concept {i}", "x", images={s: None for s in names}) for i in range(count)]


def test_splits_hold_out_concepts_and_combinations_from_the_seed():
    concepts = _concepts(400)
    kinds = assign_splits(concepts, seed=0)
    assert kinds == assign_splits(_concepts(400), seed=0)
    assert kinds != assign_splits(concepts, seed=1)
    held_concepts = {cp for (cp, _), kind in kinds.items() if kind == UNSEEN_CONCEPT}
    combos = [(cp, style) for (cp, style), kind in kinds.items() if kind == UNSEEN_COMBINATION]
    assert len(held_concepts) == 20 and len(combos) == 60  # 5% and 15% of 400
    for codepoints, style in combos:
        assert codepoints not in held_concepts
        assert sum(kinds[(codepoints, s)] == "train" for s in concepts[0].images) == 5  # seen in its other styles
        assert any(kinds[(other, style)] == "train" for other, _ in kinds if other != codepoints)  # style seen elsewhere
    assert set(Counter(style for _, style in combos)) == set(concepts[0].images)


def test_built_test_split_names_its_kind(built):
    out, _ = built
    for row in _records(out):
        assert row["split_kind"] in ("train", UNSEEN_COMBINATION, UNSEEN_CONCEPT)
        split = "train" if row["split_kind"] == "train" else "test"
        assert (out / split / row["file_name"]).is_file()


def test_a_svg_that_fails_to_draw_is_named_and_nothing_is_written(tarballs, tmp_path):
    broken = openmoji_tarball(tmp_path, svg_override={"package/color/svg/1F431.svg": b"<svg><not closed"})
    out = tmp_path / "corpus"
    with pytest.raises(DataError, match="1F431.svg"):
        build_emoji_styles(out, resolution=32, tarballs={**tarballs, "openmoji": broken}, workers=1, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".corpus*"))
    info = build_emoji_styles(out, resolution=32, tarballs={**tarballs, "openmoji": broken}, skip_invalid=True, workers=1, progress=False)
    assert len(info["skipped"]) == 1 and "1F431.svg" in info["skipped"][0]
    assert sum(info["splits"].values()) == 26


def test_a_corrupt_tarball_is_named(tarballs, tmp_path):
    corrupt = tmp_path / "openmoji-17.0.0.tgz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="openmoji-17.0.0.tgz: not a readable npm tarball"):
        build_emoji_styles(tmp_path / "out", resolution=32, tarballs={**tarballs, "openmoji": corrupt}, workers=1, progress=False)
    assert not (tmp_path / "out").exists()


def test_missing_or_unparsable_metadata_is_named(tarballs, tmp_path):
    from tests.emoji_fixture import datasource_tarball

    garbled = datasource_tarball(tmp_path, "google", emoji_json=b"{not json")
    with pytest.raises(DataError, match="emoji.json: cannot parse"):
        read_all({**tarballs, "google": garbled})
    no_table = tmp_path / "no-table.tgz"
    import tarfile

    with tarfile.open(no_table, "w:gz"):
        pass
    with pytest.raises(DataError, match="openmoji.csv is missing"):
        read_all({**tarballs, "openmoji": no_table})


def test_a_concept_without_a_name_is_refused_or_skipped():
    nameless = SourceImage("E0FF0", "google", b"", "png", "google.tgz:package/img/google/64/e0ff0.png")
    with pytest.raises(DataError, match="e0ff0.png: the concept E0FF0 has no name"):
        join_concepts([nameless], {})
    concepts, skipped = join_concepts([nameless], {}, skip_invalid=True)
    assert concepts == [] and "has no name" in skipped[0][1]


def _fake_npm(payload: bytes | None, returncode: int = 0):
    def run(command, cwd, **kwargs):
        assert command[:2] == ["npm", "pack"]
        if payload is not None:
            (Path(cwd) / f"{command[2].replace('@', '-', 1)}.tgz").write_bytes(payload)
        return subprocess.CompletedProcess(command, returncode, stdout="", stderr="npm error network ETIMEDOUT")
    return run


def test_fetch_checks_pinned_checksums(tmp_path):
    import hashlib

    payload = b"a tarball"
    package = Package("demo-set", "1.0.0", hashlib.sha256(payload).hexdigest(), "MIT", "demo")
    paths = fetch_tarballs(tmp_path, packages={"demo": package}, runner=_fake_npm(payload))
    assert paths["demo"].read_bytes() == payload
    assert fetch_tarballs(tmp_path, packages={"demo": package}, runner=_fake_npm(None, 1))  # cached: npm not asked
    paths["demo"].write_bytes(b"tampered")
    with pytest.raises(DataError, match="SHA-256 .* is not the pinned"):
        fetch_tarballs(tmp_path, packages={"demo": package}, runner=_fake_npm(None))


def test_fetch_without_the_registry_says_where_to_put_the_tarball(tmp_path):
    package = Package("demo-set", "1.0.0", "0" * 64, "MIT", "demo")
    with pytest.raises(DependencyError, match=f"npm registry reachable.*demo-set-1.0.0.tgz.*{tmp_path}"):
        fetch_tarballs(tmp_path, packages={"demo": package}, runner=_fake_npm(None, 1))
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing half-fetched


def test_fetch_without_npm_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(DependencyError, match="needs npm.*apt-get install npm"):
        fetch_tarballs(tmp_path)


def test_cli_reports_a_bad_tarball_in_one_line(tmp_path, capsys):
    (tmp_path / PACKAGES["google"].tarball).write_bytes(b"not the pinned file")
    code = main(["data", "emoji-styles", "--out", str(tmp_path / "out"), "--tarball-dir", str(tmp_path)])
    assert code == 2
    assert "is not the pinned" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_huggingface_datasets_reads_the_extra_columns(built):
    datasets = pytest.importorskip("datasets")
    out, _ = built
    dataset = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert {"concept", "style", "category", "split_kind", "license"} <= set(dataset.column_names)
    assert isinstance(dataset[0]["image"], Image.Image)


def test_tag_captions_keep_the_wording_test_tag_out():
    heart = {"concept": "red heart", "style": "twitter", "tags": ["red", "love", "fixture"]}
    assert wording_test_tag("red heart", heart["tags"]) == "love"  # "red" shares a word with the name
    assert tag_captions(heart, 2) == ("red, twitter style", "fixture, twitter style")
    assert tag_captions(heart, 1) == ("red, twitter style",)
    assert tag_captions({"concept": "red heart", "tags": ["red"]}, 2) == ("red",)  # no style column: the bare tag
    assert tag_captions({"concept": "red heart"}, 2) == ()


def test_training_learns_tag_captions_beside_the_names(built):
    out, _ = built
    config = GANTrainConfig(train_data_dir=str(out), text_encoder="bag-of-words", tag_captions=2)
    _, data, _ = load_training_data(config, out, progress=False)
    assert "red, twitter style" in data.captions          # a tag that shares a word with the name
    assert "fixture, twitter style" not in data.captions  # the heart's wording test tag: never taught
    assert "red heart, twitter style" in data.captions and "red heart" in data.captions
    with pytest.raises(ConfigError, match="tag_captions must be a count"):
        GANTrainConfig(tag_captions=-1)


def test_tag_captions_on_a_dataset_without_tags_is_refused(tmp_path):
    folder = tmp_path / "plain" / "train"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8), "white").save(folder / "a.png")
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "a white square"}) + "\n")
    config = GANTrainConfig(train_data_dir=str(tmp_path / "plain"), text_encoder="bag-of-words", tag_captions=1)
    with pytest.raises(ConfigError, match="no 'tags' column"):
        load_training_data(config, tmp_path / "plain", progress=False)
