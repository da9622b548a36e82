"""`limner data`: builtin datasets (shapes, emoji, emoji-styles) and tar shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from limner.errors import DataError


def add_parsers(commands) -> None:
    data = commands.add_parser("data", help="build a builtin dataset as an imagefolder").add_subparsers(dest="dataset", required=True)
    shapes = data.add_parser("shapes", help="the compositional shapes dataset")
    shapes.add_argument("--out", required=True)
    shapes.add_argument("--resolution", type=int, default=32)
    shapes.add_argument("--train-size", type=int, default=20_000)
    shapes.add_argument("--test-size", type=int, default=2_000)
    shapes.add_argument("--seed", type=int, default=0)
    emoji = data.add_parser("emoji", help="Noto Color Emoji glyphs captioned by their names")
    emoji.add_argument("--out", required=True)
    emoji.add_argument("--resolution", type=int, default=64)
    emoji.add_argument("--font", default=None, help="path to NotoColorEmoji.ttf")
    styles = data.add_parser("emoji-styles", help="open emoji sets (Google, Twitter, OpenMoji, Fluent x3) joined by concept, six styles")
    styles.add_argument("--out", required=True)
    styles.add_argument("--resolution", type=int, default=64, help="32, 64 or 128")
    styles.add_argument("--seed", type=int, default=0, help="the seed of the held-out concepts and combinations")
    styles.add_argument("--skin-tones", action="store_true", help="also the skin-tone variants (base emoji only by default)")
    styles.add_argument("--tarball-dir", default=None,
                        help="folder of the npm tarballs (fetched there with `npm pack` when absent; default $LIMNER_DATA/npm)")
    styles.add_argument("--skip-invalid-images", action="store_true", help="skip and count images that fail to draw instead of stopping")
    pack = data.add_parser("pack", help="write an imagefolder as tar shards that training streams (datasets past memory)")
    pack.add_argument("folder", help="an imagefolder dataset")
    pack.add_argument("--out", required=True, help="an empty folder for SPLIT-000000.tar, ...")
    pack.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    pack.add_argument("--splits", nargs="+", default=["train", "test"], help="splits to pack (missing ones are skipped)")
    pack.add_argument("--skip-invalid-images", action="store_true", help="skip and count bad entries instead of stopping")


def run_data(args: argparse.Namespace) -> int:
    from limner.data import build_emoji, build_shapes

    if args.dataset == "pack":
        return _pack(args)
    if args.dataset == "emoji-styles":
        return _emoji_styles(args)
    if args.dataset == "shapes":
        info = build_shapes(args.out, resolution=args.resolution, train_size=args.train_size, test_size=args.test_size, seed=args.seed)
    else:
        info = build_emoji(args.out, resolution=args.resolution, font_path=args.font)
    print(f"wrote {args.out}: " + ", ".join(f"{n} {split}" for split, n in info["splits"].items()))
    return 0


def _emoji_styles(args: argparse.Namespace) -> int:
    from limner.data.emoji_sources import cache_folder, fetch_tarballs
    from limner.data.emoji_styles import build_emoji_styles

    tarballs = fetch_tarballs(Path(args.tarball_dir) if args.tarball_dir else cache_folder())
    info = build_emoji_styles(args.out, resolution=args.resolution, seed=args.seed, skin_tones=args.skin_tones,
                              skip_invalid=args.skip_invalid_images, tarballs=tarballs)
    print(f"wrote {args.out}: {info['concepts']} concepts ({info['concepts_in_all_styles']} in all six styles), "
          + ", ".join(f"{n} {split}" for split, n in info["splits"].items())
          + f"; test: {info['split_kinds']['unseen_combination']} unseen combinations, {info['split_kinds']['unseen_concept']} images of unseen concepts"
          + (f"; skipped {len(info['skipped'])}" if info["skipped"] else ""))
    return 0


def _pack(args: argparse.Namespace) -> int:
    from limner.data import ImageFolder
    from limner.data.shards import pack_shards

    written = {}
    for split in args.splits:
        try:
            ImageFolder(args.folder, split, skip_invalid=True)
        except DataError:
            if split == "train":
                raise
            continue  # an optional split the folder does not have
        paths = pack_shards(args.folder, args.out, split=split, shard_size=args.shard_size, skip_invalid=args.skip_invalid_images)
        written[split] = len(paths)
    print(f"wrote {args.out}: " + ", ".join(f"{n} {split} shard(s)" for split, n in written.items()))
    return 0


COMMANDS = {"data": run_data}
