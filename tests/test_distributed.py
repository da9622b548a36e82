"""Data-parallel training under torchrun: 2 CPU processes (gloo) take the steps one process
takes on the same global batch, and a run resumes into a different number of processes."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TINY_GENERATOR_ON_SHAPES, tiny_train_overrides

# contrastive terms compare every image with every caption of a process's own batch, so they are
# not the same on half batches; everything else (hinge, penalty, reconstruction, noise) averages exactly
EXACT = {"contrastive_weight": 0.0, "image_contrastive_weight": 0.0, "condition_noise": 0.25, "reconstruction_weight": 1.0,
         "train_batch_size": 8, "validation_steps": 1000}


def train(data, out, config_file, *, processes: int, steps: int) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m"] if processes > 1 else [sys.executable, "-m"]
    command = [*launcher, "limner.cli", "train", "--preset", "shapes", "--config", str(config_file), "--output-dir", str(out),
               "--max-train-steps", str(steps), "--resume-from-checkpoint", "latest", "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def weights(folder):
    return load_file(str(folder / "generator" / "model.safetensors"))


@pytest.fixture
def config_file(tiny_shapes, tmp_path):
    path = tmp_path / "tiny.json"
    values = {**tiny_train_overrides(tiny_shapes, "unused"), **EXACT, "generator": TINY_GENERATOR_ON_SHAPES}
    values.pop("output_dir")
    path.write_text(json.dumps(values))
    return path


def assert_same_weights(a, b) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), (name, (a[name] - b[name]).abs().max())


def test_two_processes_reach_the_weights_of_one_on_the_same_global_batch(tiny_shapes, tmp_path, config_file):
    train(tiny_shapes, tmp_path / "one", config_file, processes=1, steps=3)
    train(tiny_shapes, tmp_path / "two", config_file, processes=2, steps=3)
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert_same_weights(one, two)
    assert not torch.equal(one["to_rgb.weight"], weights(tmp_path / "two" / "checkpoints" / "checkpoint-2")["to_rgb.weight"])  # it trained
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-3"]  # rank 0 only


def test_a_run_resumes_into_a_different_number_of_processes(tiny_shapes, tmp_path, config_file):
    train(tiny_shapes, tmp_path / "straight", config_file, processes=1, steps=4)
    train(tiny_shapes, tmp_path / "switched", config_file, processes=2, steps=2)
    train(tiny_shapes, tmp_path / "switched", config_file, processes=1, steps=4)  # resumes at step 2 in one process
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "switched"))
