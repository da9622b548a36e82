"""The open emoji sets behind `limner data emoji-styles`: which npm packages, under which
licence, how they are fetched and checked, and how each is read into images keyed by code points.

Four packages, six styles:

    emoji-datasource-google@16.0.0   google                 64 px PNGs, Noto Emoji art (Apache-2.0)
    emoji-datasource-twitter@16.0.0  twitter                64 px PNGs, Twemoji art (CC-BY-4.0)
    openmoji@17.0.0                  openmoji               SVGs (CC-BY-SA-4.0)
    fluentui-emoji@1.3.0             fluent, fluent flat,   SVGs of Microsoft's Fluent UI Emoji (MIT)
                                     fluent high contrast

Tarballs are fetched with `npm pack NAME@VERSION` into a cache folder and checked against the
SHA-256 pinned here; members are read straight from the tarball, never extracted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from limner.errors import DataError, DependencyError


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str       # of the npm tarball, checked on every build
    license: str      # SPDX id of the images
    attribution: str  # what the licence asks to credit

    @property
    def tarball(self) -> str:
        return f"{self.name}-{self.version}.tgz"


PACKAGES = {
    "google": Package("emoji-datasource-google", "16.0.0", "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
                      "Apache-2.0", "Noto Emoji by Google (https://github.com/googlefonts/noto-emoji), via emoji-datasource"),
    "twitter": Package("emoji-datasource-twitter", "16.0.0", "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877",
                       "CC-BY-4.0", "Twemoji by Twitter and contributors (https://github.com/jdecked/twemoji), via emoji-datasource"),
    "openmoji": Package("openmoji", "17.0.0", "55ee7d13485dec86e9f38c1f3a645a13382d33ff97c0cd845ee824b0aef45e68",
                        "CC-BY-SA-4.0", "OpenMoji, the open-source emoji and icon project (https://openmoji.org)"),
    "fluent": Package("fluentui-emoji", "1.3.0", "ec892e607e854859b812c7d827801756adc19955b0ef56d4ae8afcddd19492c5",
                      "MIT", "Fluent UI Emoji by Microsoft (https://github.com/microsoft/fluentui-emoji), via fluentui-emoji"),
}
STYLES = ("google", "twitter", "openmoji", "fluent", "fluent flat", "fluent high contrast")
FLUENT_FOLDERS = {"modern": "fluent", "flat": "fluent flat", "high-contrast": "fluent high contrast"}
SKIN_TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark", "1F3FF": "dark"}
NPM_TIMEOUT_S = 300


def normalize_codepoints(sequence: str) -> str:
    """'1f468-200d-1F4bb' or '2764-FE0F' -> '1F468-200D-1F4BB', '2764': upper-case hex, FE0F dropped."""
    parts = [p.upper().lstrip("0").rjust(4, "0") for p in re.split(r"[-_ ]", sequence.strip()) if p]
    return "-".join(p for p in parts if p != "FE0F")


@dataclass
class SourceImage:
    """One picture of one concept in one style, not yet decoded."""

    codepoints: str         # normalised, see normalize_codepoints
    style: str              # one of STYLES
    data: bytes             # PNG or SVG bytes
    kind: str               # "png" or "svg"
    where: str              # "tarball:member", for error messages
    name: str | None = None       # the set's own name for the concept, where it has one
    category: str | None = None
    tags: tuple[str, ...] = ()


# ---------------------------------------------------------------- fetching

def cache_folder(root: Path | None = None) -> Path:
    """Where tarballs are kept: $LIMNER_DATA/npm (default ~/.cache/limner/datasets/npm)."""
    base = root or Path(os.environ.get("LIMNER_DATA", Path.home() / ".cache" / "limner" / "datasets"))
    return Path(base) / "npm"


def fetch_tarballs(cache: Path, *, packages: dict[str, Package] | None = None,
                   runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> dict[str, Path]:
    """Every pinned tarball, from the cache or `npm pack`, each checked against its SHA-256."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, package in (packages or PACKAGES).items():
        path = cache / package.tarball
        if not path.is_file():
            _npm_pack(package, cache, runner)
        verify_checksum(path, package)
        paths[key] = path
    return paths


def _npm_pack(package: Package, cache: Path, runner) -> None:
    spec = f"{package.name}@{package.version}"
    hint = (f"or download {package.tarball} (e.g. `npm pack {spec}` on a machine with access to the npm registry) "
            f"and put it in {cache}")
    if shutil.which("npm") is None and runner is subprocess.run:
        raise DependencyError(f"fetching {spec} needs npm, which is not installed: sudo apt-get install npm, {hint}")
    with tempfile.TemporaryDirectory(dir=cache, prefix=".npm-pack-") as staging:
        try:
            result = runner(["npm", "pack", spec, "--silent"], cwd=staging, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise DependencyError(f"npm pack {spec} failed ({err}); {hint}") from err
        fetched = Path(staging) / package.tarball
        if result.returncode != 0 or not fetched.is_file():
            detail = (result.stderr or result.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise DependencyError(f"npm pack {spec} failed ({detail[0]}): is the npm registry reachable? {hint}")
        os.replace(fetched, cache / package.tarball)  # whole or not at all


def verify_checksum(path: Path, package: Package) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != package.sha256:
        raise DataError(f"{path}: SHA-256 {digest.hexdigest()} is not the pinned {package.sha256} of "
                        f"{package.name}@{package.version}; delete the file to fetch it again")


# ---------------------------------------------------------------- reading

def read_members(tarball: Path, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """Bytes of the regular-file members whose name passes `wanted`, in one pass; a broken
    tarball raises DataError naming it."""
    members = {}
    try:
        with tarfile.open(tarball, "r:*") as archive:
            for member in archive:
                if member.isfile() and wanted(member.name):
                    members[member.name] = archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{tarball}: not a readable npm tarball ({err})") from err
    return members


def _json_member(members: dict[str, bytes], name: str, tarball: Path):
    if name not in members:
        raise DataError(f"{tarball}: {name} is missing")
    try:
        return json.loads(members[name].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{tarball}:{name}: cannot parse ({err})") from err


def read_datasource(tarball: Path, style: str, *, skin_tones: bool = False) -> list[SourceImage]:
    """emoji-datasource-{google,twitter}: package/emoji.json and package/img/<set>/64/<image>."""
    folder = f"package/img/{style}/64/"
    members = read_members(tarball, lambda n: n == "package/emoji.json" or n.startswith(folder))
    entries = _json_member(members, "package/emoji.json", tarball)
    if not isinstance(entries, list):
        raise DataError(f"{tarball}:package/emoji.json: expected a list of emoji")
    images = []
    for entry in entries:
        variants = [entry] + (list((entry.get("skin_variations") or {}).values()) if skin_tones else [])
        for variant in variants:
            member = folder + str(variant.get("image", ""))
            if not variant.get(f"has_img_{style}") or member not in members or entry.get("category") == "Component":
                continue
            name = entry.get("name")
            images.append(SourceImage(
                normalize_codepoints(variant["unified"]), style, members[member], "png", f"{tarball.name}:{member}",
                name=name.lower() if isinstance(name, str) else None, category=entry.get("category"),
            ))
    return images


def read_openmoji(tarball: Path, *, skin_tones: bool = False) -> list[SourceImage]:
    """openmoji: package/data/openmoji.csv (annotation = CLDR short name, tags) and package/color/svg/<HEX>.svg."""
    members = read_members(tarball, lambda n: n == "package/data/openmoji.csv" or n.startswith("package/color/svg/"))
    table = "package/data/openmoji.csv"
    if table not in members:
        raise DataError(f"{tarball}: {table} is missing")
    try:
        rows = list(csv.DictReader(io.StringIO(members[table].decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{tarball}:{table}: cannot parse ({err})") from err
    if rows and not {"hexcode", "annotation", "group"} <= set(rows[0]):
        raise DataError(f"{tarball}:{table}: needs the columns hexcode, annotation and group")
    images = []
    for line, row in enumerate(rows, 2):
        if row["group"] in ("extras-openmoji", "extras-unicode", "component") or (row.get("skintone") and not skin_tones):
            continue
        member = f"package/color/svg/{row['hexcode']}.svg"
        if member not in members:
            continue
        tags = tuple(t.strip() for t in (row.get("tags") or "").split(",") if t.strip())
        images.append(SourceImage(
            normalize_codepoints(row["hexcode"]), "openmoji", members[member], "svg", f"{tarball.name}:{member}",
            name=(row.get("annotation") or "").strip() or None, category=row["group"], tags=tags,
        ))
    return images


def read_fluent(tarball: Path, slugs: dict[str, str], *, skin_tones: bool = False) -> tuple[list[SourceImage], list[str]]:
    """fluentui-emoji: package/icons/{modern,flat,high-contrast}/<slug>.svg, where the slug is a
    CLDR name's; `slugs` maps slug -> code points. Also the file names no slug matched."""
    members = read_members(tarball, lambda n: n.startswith("package/icons/") and n.endswith(".svg"))
    images, unmatched = [], []
    for member, data in sorted(members.items()):
        parts = member.split("/")
        if len(parts) != 4 or parts[2] not in FLUENT_FOLDERS:
            continue
        codepoints = _fluent_codepoints(parts[3][: -len(".svg")], slugs, skin_tones=skin_tones)
        if codepoints is None:
            unmatched.append(member)
            continue
        if codepoints:  # "" marks a skin-tone variant left out
            images.append(SourceImage(codepoints, FLUENT_FOLDERS[parts[2]], data, "svg", f"{tarball.name}:{member}"))
    return images, unmatched


_TONE_SLUGS = {slug: code for code, slug in SKIN_TONES.items()}


def _fluent_codepoints(stem: str, slugs: dict[str, str], *, skin_tones: bool) -> str | None:
    """Code points of a Fluent file stem; '' for a skin-tone variant when tones are off; None if unknown.
    'artist-default' is the base of a concept drawn in tones; 'artist-medium-dark' a tone of it."""
    readings = [(stem, None)]
    if stem.endswith("-default"):
        readings.append((stem[: -len("-default")], None))
    readings += [(stem[: -len(tone) - 1], code) for tone, code in _TONE_SLUGS.items() if stem.endswith("-" + tone)]
    for base, tone in readings:
        codepoints = slugs.get(FLUENT_ALIASES.get(base, base))
        if codepoints is None:
            continue
        if tone is None:
            return codepoints
        if not skin_tones:
            return ""
        first, *rest = codepoints.split("-")
        return "-".join([first, tone, *rest])  # the modifier follows the person it tones
    return None


def slugify(name: str) -> str:
    """'A button (blood type)' -> 'a-button-blood-type', 'piñata' -> 'pinata', 'keycap: *' ->
    'keycap-asterisk', as Fluent names its files."""
    name = KEYCAP_WORDS.get(name, name)
    ascii_name = unicodedata.normalize("NFKD", name.lower()).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"['’“”]", "", ascii_name)
    return re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")


KEYCAP_WORDS = {"keycap: *": "keycap asterisk", "keycap: #": "keycap number sign"}


# Fluent file names from an older CLDR release (or spelled differently), mapped to today's slug.
FLUENT_ALIASES = {
    "blackbird": "black-bird", "hugging-face": "smiling-face-with-open-hands", "knocked-out-face": "face-with-crossed-out-eyes",
    "pouting-face": "enraged-face", "red-triangle": "red-triangle-pointed-up", "phoenix-bird": "phoenix",
    "stuffedbread": "stuffed-flatbread", "stuffedbread-flat": "stuffed-flatbread",
    "keycap-asterisk": "keycap-asterisk", "keycap-hashtag": "keycap-number-sign",
    "man-blonde-hair": "man-blond-hair", "woman-blonde-hair": "woman-blond-hair", "person-blonde-hair": "person-blond-hair",
    "man-deaf": "deaf-man", "woman-deaf": "deaf-woman", "person-deaf": "deaf-person",
    "man-merpeople": "merman", "woman-merpeople": "mermaid", "person-merpeople": "merperson",
    "man-with-bunny-ears": "men-with-bunny-ears", "woman-with-bunny-ears": "women-with-bunny-ears",
    "person-with-bunny-ears": "people-with-bunny-ears",
    "man-wrestling": "men-wrestling", "woman-wrestling": "women-wrestling", "person-wrestling": "people-wrestling",
    **{f"person-{kind}": kind for kind in ("elf", "fairy", "genie", "mage", "superhero", "supervillain", "vampire", "zombie")},
}


def concept_names(images: list[SourceImage]) -> dict[str, str]:
    """Code points -> the concept's CLDR short name: OpenMoji's annotation, else the `emoji`
    package's English name, else the set's own name (lower case)."""
    names: dict[str, str] = {}
    for image in sorted(images, key=lambda image: image.style != "openmoji"):  # OpenMoji's first
        if image.name and image.style == "openmoji":
            names.setdefault(image.codepoints, image.name)
    cldr = _emoji_package_names()
    for image in images:
        if image.codepoints not in names:
            name = cldr.get(image.codepoints) or image.name
            if name:
                names[image.codepoints] = name
    return names


def _emoji_package_names() -> dict[str, str]:
    try:
        import emoji
    except ImportError:
        return {}
    names = {}
    for char, data in emoji.EMOJI_DATA.items():
        codepoints = normalize_codepoints("-".join(f"{ord(c):X}" for c in char))
        names.setdefault(codepoints, data["en"].strip(":").replace("_", " "))
    return names


def read_all(tarballs: dict[str, Path], *, skin_tones: bool = False) -> tuple[list[SourceImage], dict[str, str], list[str]]:
    """(every image of every set, code points -> CLDR name, Fluent files no name matched)."""
    coded = (read_datasource(tarballs["google"], "google", skin_tones=skin_tones)
             + read_datasource(tarballs["twitter"], "twitter", skin_tones=skin_tones)
             + read_openmoji(tarballs["openmoji"], skin_tones=skin_tones))
    names = concept_names(coded)
    slugs = {slugify(name): codepoints for codepoints, name in names.items()}
    fluent, unmatched = read_fluent(tarballs["fluent"], slugs, skin_tones=skin_tones)
    return coded + fluent, names, unmatched
