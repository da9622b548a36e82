import json

import pytest
from PIL import Image

from limner.data import ImageFolder
from limner.errors import DataError


def _folder(tmp_path, lines, *, images=("a.png", "b.png"), split="train", name="metadata.jsonl"):
    folder = tmp_path / split
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.new("RGB", (40, 30), (i * 50, 0, 0)).save(folder / image)
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    (folder / name).write_text(text + "\n")
    return tmp_path


def test_reads_jsonl_with_string_and_list_captions(tmp_path):
    root = _folder(tmp_path, [{"file_name": "a.png", "text": "one"}, {"file_name": "b.png", "text": ["two", "deux"]}])
    folder = ImageFolder(root, "train")
    assert [r.captions for r in folder.records] == [("one",), ("two", "deux")]
    assert folder.captions == ["deux", "one", "two"]
    images = folder.load_images(16, progress=False)
    assert images.shape == (2, 3, 16, 16) and images.dtype.__str__() == "torch.uint8"


def test_reads_csv(tmp_path):
    root = _folder(tmp_path, ["file_name,text", "a.png,a red thing", "b.png,\"a blue, round thing\""], name="metadata.csv")
    assert ImageFolder(root).captions == ["a blue, round thing", "a red thing"]


def test_missing_image_names_file_and_line(tmp_path):
    root = _folder(tmp_path, [{"file_name": "a.png", "text": "x"}, {"file_name": "gone.png", "text": "y"}])
    with pytest.raises(DataError, match=r"metadata.jsonl:2: image 'gone.png' not found"):
        ImageFolder(root)


def test_malformed_line_names_line(tmp_path):
    root = _folder(tmp_path, [{"file_name": "a.png", "text": "x"}, "{not json"])
    with pytest.raises(DataError, match=r"metadata.jsonl:2: malformed line"):
        ImageFolder(root)


@pytest.mark.parametrize("row, message", [
    ({"file_name": "a.png"}, "'text' must be a non-empty string"),
    ({"file_name": "a.png", "text": ""}, "'text' must be a non-empty string"),
    ({"file_name": "a.png", "text": []}, "'text' must be a non-empty string"),
    ({"text": "x"}, "'file_name' is missing"),
    (["a.png", "x"], "expected an object"),
])
def test_bad_rows(tmp_path, row, message):
    root = _folder(tmp_path, [row])
    with pytest.raises(DataError, match=rf"metadata.jsonl:1: {message}"):
        ImageFolder(root)


def test_path_leaving_the_dataset_is_refused(tmp_path):
    (tmp_path / "secret.png").parent.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.png")
    root = _folder(tmp_path / "ds", [{"file_name": "../../secret.png", "text": "x"}])
    with pytest.raises(DataError, match="leaves the dataset folder"):
        ImageFolder(root)


def test_corrupt_image_names_file_and_line(tmp_path):
    root = _folder(tmp_path, [{"file_name": "a.png", "text": "x"}, {"file_name": "b.png", "text": "y"}])
    (root / "train" / "b.png").write_bytes(b"not a png at all")
    folder = ImageFolder(root)
    with pytest.raises(DataError, match=r"metadata.jsonl:2: cannot read image 'b.png'"):
        folder.load_images(16, progress=False)


def test_skip_invalid_skips_and_counts(tmp_path):
    root = _folder(tmp_path, [
        {"file_name": "a.png", "text": "x"}, "{bad", {"file_name": "nope.png", "text": "y"}, {"file_name": "b.png", "text": "z"},
    ])
    (root / "train" / "b.png").write_bytes(b"garbage")
    folder = ImageFolder(root, skip_invalid=True)
    images = folder.load_images(8, progress=False)
    assert images.shape[0] == 1 and len(folder.records) == 1
    assert len(folder.skipped) == 3
    assert [where.rsplit(":", 1)[1] for where, _ in folder.skipped] == ["2", "3", "4"]


def test_missing_split_lists_the_splits(tmp_path):
    root = _folder(tmp_path, [{"file_name": "a.png", "text": "x"}])
    with pytest.raises(DataError, match=r"no split 'test' \(splits found: \['train'\]\)"):
        ImageFolder(root, "test")
    with pytest.raises(DataError, match="dataset folder not found"):
        ImageFolder(tmp_path / "nowhere")


def test_transparent_images_go_on_white(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(folder / "a.png")
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "x"}) + "\n")
    assert ImageFolder(tmp_path).load_images(8, progress=False).min() == 255
