"""Training loses no work: checksummed checkpoints, fallbacks, a full disk, SIGTERM and SIGKILL."""

import errno
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from limner.errors import CheckpointError
from limner.pipelines import TextToImagePipeline
from limner.training import Trainer, build_train_config
from limner.training.checkpoint import MANIFEST, list_checkpoints, resolve_checkpoint, verify_checkpoint
from tests.conftest import TINY_GENERATOR_ON_SHAPES, tiny_train_overrides


def _trainer(data, out, **extra):
    return Trainer(build_train_config(None, tiny_train_overrides(data, out, **extra)), progress=False)


def _two_checkpoints(tiny_shapes, tmp_path):
    _trainer(tiny_shapes, tmp_path / "run", max_train_steps=4, checkpointing_steps=2).train()
    root = tmp_path / "run" / "checkpoints"
    assert [s for s, _ in list_checkpoints(root)] == [2, 4]
    return root


def test_every_checkpoint_carries_checksums_that_pass(tiny_shapes, tmp_path):
    root = _two_checkpoints(tiny_shapes, tmp_path)
    manifest = json.loads((root / "checkpoint-4" / MANIFEST).read_text())
    assert manifest["step"] == 4 and "training_state.pt" in manifest["sha256"] and "generator/model.safetensors" in manifest["sha256"]
    verify_checkpoint(root / "checkpoint-4")


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest"])
def test_a_damaged_newest_checkpoint_is_reported_and_the_previous_one_used(tiny_shapes, tmp_path, damage, caplog):
    root = _two_checkpoints(tiny_shapes, tmp_path)
    weights = root / "checkpoint-4" / "generator" / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "delete":
        (root / "checkpoint-4" / "training_state.pt").unlink()
    else:
        (root / "checkpoint-4" / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError):
        verify_checkpoint(root / "checkpoint-4")
    assert resolve_checkpoint(root, "latest") == root / "checkpoint-2"
    assert "skipping a bad checkpoint" in caplog.text and "checkpoint-4" in caplog.text
    assert _trainer(tiny_shapes, tmp_path / "run", max_train_steps=6, resume_from_checkpoint="latest").step == 2
    with pytest.raises(CheckpointError):  # asked for by name, a damaged checkpoint is refused outright
        resolve_checkpoint(root, str(root / "checkpoint-4"))


def test_when_every_checkpoint_is_damaged_resuming_says_so(tiny_shapes, tmp_path):
    root = _two_checkpoints(tiny_shapes, tmp_path)
    for _, folder in list_checkpoints(root):
        (folder / "training_state.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="every checkpoint"):
        resolve_checkpoint(root, "latest")


def test_a_full_disk_fails_clearly_and_keeps_the_previous_checkpoint(tiny_shapes, tmp_path, monkeypatch):
    root = _two_checkpoints(tiny_shapes, tmp_path)
    trainer = _trainer(tiny_shapes, tmp_path / "run", max_train_steps=8, checkpointing_steps=2, resume_from_checkpoint="latest")
    real_write_bytes = Path.write_bytes

    def disk_fills_up(path, data):
        if path.name != "training_state.pt":
            return real_write_bytes(path, data)
        real_write_bytes(path, data[:1000])  # part of the file lands, then the device is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_fills_up)
    with pytest.raises(CheckpointError, match=r"no space left on the device; the previous checkpoint \(checkpoint-4\) is intact"):
        trainer.train()
    monkeypatch.setattr(Path, "write_bytes", real_write_bytes)
    assert [s for s, _ in list_checkpoints(root)] == [2, 4]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no half-written leftovers
    verify_checkpoint(root / "checkpoint-4")


@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_disk(folder, leave_bytes: int) -> None:
    """Write a filler file until the device is full, then give back `leave_bytes`."""
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    with open(filler, "r+b") as handle:
        handle.truncate(max(0, filler.stat().st_size - leave_bytes))


def test_a_really_full_disk_fails_clearly_and_keeps_the_previous_checkpoint(tiny_shapes, small_disk):
    root = _two_checkpoints(tiny_shapes, small_disk)
    checkpoint_bytes = sum(f.stat().st_size for f in (root / "checkpoint-4").rglob("*") if f.is_file())
    fill_disk(small_disk, leave_bytes=checkpoint_bytes // 2)  # room for the logs, not for a whole checkpoint
    trainer = _trainer(tiny_shapes, small_disk / "run", max_train_steps=8, checkpointing_steps=2, validation_steps=1000,
                       resume_from_checkpoint="latest")
    with pytest.raises(CheckpointError, match=r"no space left on the device; the previous checkpoint \(checkpoint-4\) is intact"):
        trainer.train()
    assert [s for s, _ in list_checkpoints(root)] == [2, 4]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # the half-written one is cleaned away
    verify_checkpoint(root / "checkpoint-4")
    (small_disk / "filler").unlink()  # space again: resuming carries on from step 4
    resumed = _trainer(tiny_shapes, small_disk / "run", max_train_steps=6, checkpointing_steps=2, resume_from_checkpoint="latest")
    assert resumed.step == 4
    resumed.train()
    assert [s for s, _ in list_checkpoints(root)][-1] == 6


def _train_command(data, out, steps, checkpointing_steps=1):
    return [sys.executable, "-m", "limner.cli", "train", "--preset", "shapes", "--train-data-dir", str(data),
            "--output-dir", str(out), "--text-encoder", "bag-of-words", "--train-batch-size", "8",
            "--max-train-steps", str(steps), "--max-train-minutes", "0", "--checkpointing-steps", str(checkpointing_steps),
            "--validation-steps", "1000", "--resume-from-checkpoint", "latest", "--no-progress",
            "--config", str(data.parent / "tiny_models.json")]


@pytest.fixture
def tiny_models_config(tiny_shapes):
    path = tiny_shapes.parent / "tiny_models.json"
    overrides = tiny_train_overrides(tiny_shapes, "unused")
    path.write_text(json.dumps({
        "generator": TINY_GENERATOR_ON_SHAPES, "discriminator": {**overrides["discriminator"], "contrastive_dim": 0}, "contrastive_weight": 0.0,
        "image_contrastive_weight": 0.0, "text_components": 0, "text_whiten": False}))
    return path


def _wait_for_step(out, at_least, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if any(s >= at_least for s, _ in list_checkpoints(out / "checkpoints")):
            return True
        time.sleep(0.05)
    return False


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tiny_shapes, tiny_models_config, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(_train_command(tiny_shapes, out, 100_000, checkpointing_steps=50), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert _wait_for_step(out, 50, process), process.stderr.read() if process.poll() is not None else "no checkpoint"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr  # interrupted, but cleanly: model and checkpoint saved
    assert "interrupted at step" in stderr
    steps = [s for s, _ in list_checkpoints(out / "checkpoints")]
    assert steps[-1] >= 50
    verify_checkpoint(out / "checkpoints" / f"checkpoint-{steps[-1]}")
    TextToImagePipeline.from_pretrained(out)("a red circle", seed=0)


def test_training_survives_twenty_sigkills(tiny_shapes, tiny_models_config, tmp_path):
    """Kill real training at random moments (checkpoints are written every step, so many kills land
    inside a write); every restart resumes from the last complete checkpoint; the run then finishes."""
    out, endless, kills = tmp_path / "run", 1_000_000, 0
    rng = random.Random(0)
    last_step = 0
    inside_a_write = 0
    while kills < 20:
        process = subprocess.Popen(_train_command(tiny_shapes, out, endless), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not _wait_for_step(out, last_step + 1, process):
            pytest.fail("training made no progress after a restart: " + process.stderr.read().decode()[-2000:])
        time.sleep(rng.uniform(0.0, 0.6))
        process.kill()
        process.wait()
        kills += 1
        root = out / "checkpoints"
        inside_a_write += any(p.name.endswith(".tmp") for p in root.iterdir())
        resumable = resolve_checkpoint(root, "latest")  # never a damaged one
        step = int(resumable.name.split("-")[1])
        assert step >= last_step  # no work lost beyond the last checkpoint
        last_step = step
    final_steps = last_step + 10
    finish = subprocess.run(_train_command(tiny_shapes, out, final_steps), capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert f"trained {final_steps} steps" in finish.stdout
    assert inside_a_write >= 1, "no kill landed inside a checkpoint write"
    images = TextToImagePipeline.from_pretrained(out)(["a small red circle in the top left"], num_images_per_prompt=2, seed=0)
    assert len(images) == 2
    print(f"20 SIGKILLs survived, {inside_a_write} of them during a checkpoint write")
