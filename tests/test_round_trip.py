"""Text to image to text: the Python twin and `limner roundtrip`."""

from PIL import Image

from limner.cli import main
from limner.pipelines import round_trip
from limner.pipelines.round_trip import exact_rate
from tests.conftest import tiny_captioner_pipeline, tiny_pipeline

PROMPTS = ["a small red circle in the top left", "a large blue square"]


class Echo:
    """A captioner stand-in that reads back a fixed list: the round trip's bookkeeping under test."""

    def __init__(self, captions):
        self.captions = captions

    def __call__(self, images):
        assert len(images) == len(self.captions)
        return [{"generated_text": c} for c in self.captions]


def test_round_trip_pairs_each_image_with_its_prompt_and_caption():
    trips = round_trip(tiny_pipeline(), Echo(["A small  red circle in the top left", "something else", "a large blue square", "no"]),
                       PROMPTS, num_images_per_prompt=2, seed=0)
    assert [t["prompt"] for t in trips] == [PROMPTS[0]] * 2 + [PROMPTS[1]] * 2
    assert [t["exact"] for t in trips] == [True, False, True, False]  # case and spacing do not count
    assert all(isinstance(t["image"], Image.Image) for t in trips) and exact_rate(trips) == 0.5


def test_roundtrip_from_the_command_line(tmp_path, capsys):
    tiny_pipeline().save_pretrained(tmp_path / "generator")
    tiny_captioner_pipeline(PROMPTS).save_pretrained(tmp_path / "captioner")
    grid = tmp_path / "trip.png"
    assert main(["roundtrip", str(tmp_path / "generator"), str(tmp_path / "captioner"), *PROMPTS, "-n", "3", "-o", str(grid)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 7 and all(" -> " in line for line in lines[:6]) and "came back exactly" in lines[-1]
    assert Image.open(grid).text["seed"] == "0"
    assert main(["roundtrip", str(tmp_path / "generator"), str(tmp_path / "captioner"), PROMPTS[0], "-n", "0"]) == 2
