import pytest
from PIL import ImageFont

from limner.data import emoji
from limner.errors import DependencyError


def test_captions_follow_the_names():
    assert emoji.caption_of(":grinning_face_with_big_eyes:") == "grinning face with big eyes"
    assert emoji.caption_of(":thumbs_up_medium_skin_tone:") == "thumbs up: medium skin tone"
    assert emoji.caption_of(":kiss_woman_man_light_skin_tone_medium-dark_skin_tone:") == "kiss woman man: light skin tone, medium-dark skin tone"


def test_about_ten_percent_of_names_are_held_out_deterministically():
    names = [caption for _, caption in emoji.emoji_names()]
    held_out = [name for name in names if emoji.is_test_name(name)]
    assert 0.07 < len(held_out) / len(names) < 0.13
    assert held_out == [name for name in names if emoji.is_test_name(name)]


def test_missing_font_says_how_to_install(tmp_path):
    with pytest.raises(DependencyError, match="apt-get install fonts-noto-color-emoji"):
        emoji.find_font(tmp_path / "nope.ttf")


def test_renders_a_glyph_in_colour_on_white():
    try:
        path = emoji.find_font()
    except DependencyError:
        pytest.skip("fonts-noto-color-emoji is not installed")
    font = ImageFont.truetype(str(path), emoji.FONT_SIZE)
    image = emoji.render_glyph("😀", font, 64)
    assert image.size == (64, 64) and image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    red, green, blue = image.getpixel((32, 20))
    assert red > 150 and blue < 120  # the yellow face, in colour
