"""Fake npm tarballs in the layout of the four open emoji sets: a handful of PNGs and SVGs, so
the emoji-styles builder can be tested without the registry."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

from PIL import Image

# (code points as the sets write them, OpenMoji annotation, Fluent file stem, colour)
CONCEPTS = [
    ("2764-FE0F", "red heart", "red-heart", (220, 20, 40)),
    ("1F431", "cat face", "cat-face", (240, 160, 40)),
    ("1F917", "smiling face with open hands", "hugging-face", (250, 200, 60)),  # Fluent's older name
    ("1F9D1", "person", "person-default", (90, 140, 220)),                     # drawn in skin tones
    ("1F1EA-1F1EC", "flag: Egypt", None, (30, 160, 60)),                          # Fluent has no flags
]


def many_concepts(count: int) -> list[tuple]:
    """`count` more concepts in the same form, with distinct colours, for corpora big enough to split."""
    return [(f"{0x1F680 + i:X}", f"thing number {i}", f"thing-number-{i}", ((37 * i) % 256, (91 * i + 40) % 256, (53 * i + 90) % 256))
            for i in range(count)]


def png_bytes(colour, shape: str = "circle", size: int = 64) -> bytes:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    box = (size // 8, size // 8, size - size // 8, size - size // 8)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=(*colour, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def svg_bytes(colour, *, outline: bool = False) -> bytes:
    stroke = ' stroke="#000" stroke-width="4"' if outline else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72"><circle cx="36" cy="36" r="24" '
            f'fill="rgb{colour}"{stroke}/></svg>').encode()


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def datasource_tarball(folder: Path, style: str, *, extra: dict[str, bytes] | None = None, emoji_json: bytes | None = None,
                       concepts: list[tuple] = CONCEPTS) -> Path:
    entries, members = [], {}
    for codepoints, name, _, colour in concepts:
        image = codepoints.lower() + ".png"
        entry = {"name": name.upper(), "unified": codepoints, "image": image, "category": "Smileys & Emotion",
                 f"has_img_{style}": True}
        members[f"package/img/{style}/64/{image}"] = png_bytes(colour, "circle" if style == "google" else "square")
        if codepoints == "1F9D1":
            tone = {"unified": "1F9D1-1F3FB", "image": "1f9d1-1f3fb.png", f"has_img_{style}": True}
            entry["skin_variations"] = {"1F3FB": tone}
            members[f"package/img/{style}/64/1f9d1-1f3fb.png"] = png_bytes((250, 220, 190))
        entries.append(entry)
    entries.append({"name": "EMOJI COMPONENT RED HAIR", "unified": "1F9B0", "image": "1f9b0.png", "category": "Component",
                    f"has_img_{style}": True})
    members[f"package/img/{style}/64/1f9b0.png"] = png_bytes((200, 60, 0))
    members["package/emoji.json"] = emoji_json if emoji_json is not None else json.dumps(entries).encode()
    members.update(extra or {})
    return _tarball(folder / f"emoji-datasource-{style}-16.0.0.tgz", members)


def openmoji_tarball(folder: Path, *, svg_override: dict[str, bytes] | None = None, rows_extra: list[dict] | None = None,
                     concepts: list[tuple] = CONCEPTS) -> Path:
    columns = ["emoji", "hexcode", "group", "subgroups", "annotation", "tags", "openmoji_tags", "skintone"]
    rows, members = [], {}
    for codepoints, name, _, colour in concepts:
        rows.append({"hexcode": codepoints, "group": "smileys-emotion", "annotation": name, "tags": f"{name.split()[0]}, fixture"})
        members[f"package/color/svg/{codepoints}.svg"] = svg_bytes(colour, outline=True)
    rows.append({"hexcode": "1F9D1-1F3FB", "group": "people-body", "annotation": "person: light skin tone", "skintone": "1F3FB"})
    members["package/color/svg/1F9D1-1F3FB.svg"] = svg_bytes((250, 220, 190), outline=True)
    rows.append({"hexcode": "E000", "group": "extras-openmoji", "annotation": "openmoji logo"})
    members["package/color/svg/E000.svg"] = svg_bytes((0, 0, 0))
    rows += rows_extra or []
    members.update(svg_override or {})
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    members["package/data/openmoji.csv"] = text.getvalue().encode()
    return _tarball(folder / "openmoji-17.0.0.tgz", members)


def fluent_tarball(folder: Path, *, extra: dict[str, bytes] | None = None, concepts: list[tuple] = CONCEPTS) -> Path:
    members = {}
    for _, _, stem, colour in concepts:
        if stem is None:
            continue
        for style_folder in ("modern", "flat", "high-contrast"):
            members[f"package/icons/{style_folder}/{stem}.svg"] = svg_bytes(colour if style_folder != "high-contrast" else (0, 0, 0))
    members["package/icons/modern/person-light.svg"] = svg_bytes((250, 220, 190))
    members["package/icons/modern/no-such-emoji.svg"] = svg_bytes((1, 2, 3))
    members.update(extra or {})
    return _tarball(folder / "fluentui-emoji-1.3.0.tgz", members)


def fixture_tarballs(folder: Path, *, extra_concepts: int = 0) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    concepts = CONCEPTS + many_concepts(extra_concepts)
    return {
        "google": datasource_tarball(folder, "google", concepts=concepts),
        "twitter": datasource_tarball(folder, "twitter", concepts=concepts),
        "openmoji": openmoji_tarball(folder, concepts=concepts),
        "fluent": fluent_tarball(folder, concepts=concepts),
    }
