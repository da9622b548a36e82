"""Tar shards: packing an imagefolder, streaming it back, training from it, and broken shards."""

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from limner.cli import main
from limner.data import ImageFolder
from limner.data.shards import ShardReader, pack_shards, shard_paths
from limner.errors import DataError
from limner.pipelines import TextToImagePipeline
from limner.training import Trainer, build_train_config
from tests.conftest import tiny_train_overrides


@pytest.fixture(scope="module")
def packed(tiny_shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    pack_shards(tiny_shapes, out, split="train", shard_size=25, progress=False)
    pack_shards(tiny_shapes, out, split="test", shard_size=25, progress=False)
    return out


def test_packing_round_trips_every_image_and_caption(tiny_shapes, packed):
    assert [p.name for p in shard_paths(packed, "train")] == [f"train-{i:06d}.tar" for i in range(4)]  # 96 images, 25 a shard
    folder = ImageFolder(tiny_shapes, "train")
    expected = {record.captions: array for record, array in zip(folder.records, folder.load_images(32, progress=False).permute(0, 2, 3, 1).numpy())}
    reader = ShardReader(packed, resolution=32)
    streamed = list(reader.samples(epoch=0))
    assert len(streamed) == 96 and reader.captions() == folder.captions
    assert all(np.array_equal(image, expected[captions]) for image, captions in streamed)  # captions are unique here


def test_epochs_reorder_shards_and_processes_share_them_out(packed):
    first = [c for _, c in ShardReader(packed, resolution=32, seed=1).samples(epoch=0)]
    second = [c for _, c in ShardReader(packed, resolution=32, seed=1).samples(epoch=1)]
    assert sorted(first) == sorted(second) and first != second
    halves = [[c for _, c in ShardReader(packed, resolution=32, seed=1, rank=r, world_size=2).samples(epoch=0)] for r in (0, 1)]
    assert not set(halves[0]) & set(halves[1]) and sorted(halves[0] + halves[1]) == sorted(first)
    with pytest.raises(DataError, match="cannot feed 8 processes"):
        ShardReader(packed, resolution=32, world_size=8)


def test_training_streams_from_shards_and_the_model_generates(packed, tmp_path):
    config = build_train_config(None, tiny_train_overrides(packed, tmp_path / "run", max_train_steps=3))
    trainer = Trainer(config, progress=False)
    assert len(trainer.data) == 96  # the buffer holds the whole (small) dataset once
    trainer.train()
    images = TextToImagePipeline.from_pretrained(tmp_path / "run")(["a small red circle in the top left"], num_images_per_prompt=2, seed=0)
    assert len(images) == 2 and images[0].size == (32, 32)


def test_models_that_need_an_imagefolder_say_so(packed, tmp_path):
    from limner.errors import ConfigError
    from limner.training.evaluator_trainer import train_evaluator

    config = build_train_config(None, tiny_train_overrides(packed, tmp_path / "run", model="evaluator"))
    with pytest.raises(ConfigError, match="holds tar shards; the evaluator trains from an imagefolder"):
        train_evaluator(config, progress=False)


def test_the_stream_buffer_stays_bounded_and_keeps_flowing(packed):
    from limner.text import BagOfWordsEncoder, CachedTextEncoder
    from limner.training.data import StreamingCaptionedImages

    reader = ShardReader(packed, resolution=32)
    captions = reader.captions()
    data = StreamingCaptionedImages(reader, captions, CachedTextEncoder(BagOfWordsEncoder.from_captions(captions)), buffer_size=10)
    rng = torch.Generator().manual_seed(0)
    for _ in range(30):  # 30 batches of 8: about two and a half passes over 96 images
        images, sentence, mismatched = data.sample(8, rng)
        assert images.shape == (8, 3, 32, 32) and len(data) == 10
        assert not (sentence == mismatched).all(dim=1).any()
    assert data.epoch == 2


def test_pack_from_the_command_line(tiny_shapes, tmp_path, capsys):
    assert main(["data", "pack", str(tiny_shapes), "--out", str(tmp_path / "s"), "--shard-size", "50"]) == 0
    assert "2 train shard(s), 1 test shard(s)" in capsys.readouterr().out
    with pytest.raises(DataError, match="already holds train shards"):
        pack_shards(tiny_shapes, tmp_path / "s")


# ---- broken shards ----------------------------------------------------------------------

def png(color=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_tar(path, members) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


HOSTILE = {
    "has no .txt caption": [("a.png", png())],
    "has no image": [("a.txt", b"a red square")],
    "caption is not UTF-8": [("a.png", png()), ("a.txt", b"\xff\xfe caption")],
    "caption is empty": [("a.png", png()), ("a.txt", b"  \n ")],
    "cannot read image": [("a.png", b"\x89PNG\r\n\x1a\n truncated"), ("a.txt", b"a red square")],
}


@pytest.mark.parametrize("problem", sorted(HOSTILE))
def test_bad_samples_are_named_or_skipped_and_counted(tmp_path, problem):
    write_tar(tmp_path / "train-000000.tar", HOSTILE[problem] + [("good.png", png()), ("good.txt", b"a good sample")])
    with pytest.raises(DataError, match=f"train-000000.tar:a.*{problem}"):
        list(ShardReader(tmp_path, resolution=8).samples())
    reader = ShardReader(tmp_path, resolution=8, skip_invalid=True)
    assert [c for _, c in reader.samples()] == [("a good sample",)] and len(reader.skipped) == 1


def test_broken_and_fake_tars_are_refused_with_their_names(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    write_tar(good / "train-000000.tar", [(f"{i}.png", png()) if j == 0 else (f"{i}.txt", b"red") for i in range(20) for j in (0, 1)])
    data = (good / "train-000000.tar").read_bytes()
    cases = {"truncated": data[: len(data) // 2], "zero bytes": b"", "not a tar": b"PK\x03\x04 a zip, say" * 100}
    for name, content in cases.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        (folder / "train-000000.tar").write_bytes(content)
        with pytest.raises(DataError, match="train-000000.tar"):
            list(ShardReader(folder, resolution=8).samples())
        reader = ShardReader(folder, resolution=8, skip_invalid=True)
        list(reader.samples())  # goes on, and says what it dropped
        assert reader.skipped, name
    with pytest.raises(DataError, match="no test-\\*.tar shards"):
        ShardReader(tmp_path / "good", "test", resolution=8)


def test_member_paths_are_never_used_as_paths(tmp_path):
    write_tar(tmp_path / "train-000000.tar", [("../../escape.png", png()), ("../../escape.txt", b"a red square"),
                                               ("/abs/x.png", png((0, 0, 255))), ("/abs/x.txt", b"a blue square")])
    captions = [c for _, c in ShardReader(tmp_path, resolution=8).samples()]
    assert captions == [("a red square",), ("a blue square",)]
    assert not (tmp_path.parent.parent / "escape.png").exists()
