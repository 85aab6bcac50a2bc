"""``spikevision predict``: pictures and IDX files through the model's own preprocessing, text and JSON, one-line errors."""

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import spikevision
from spikevision.cli import main

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three Fashion-MNIST-like test images: a PNG, an RGB JPEG of another size, and an IDX file of both."""
    folder = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    if (FMNIST / "t10k-images-idx3-ubyte.gz").is_file():
        from spikevision.data.idx import read_idx

        arr = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz")[:2]  # an ankle boot, a pullover
    else:
        arr = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    Image.fromarray(arr[0]).save(folder / "boot.png")
    Image.fromarray(arr[1]).convert("RGB").resize((90, 90)).save(folder / "pullover.jpg")
    with gzip.open(folder / "two-images-idx3-ubyte.gz", "wb") as f:  # the IDX format: magic, dims, bytes
        f.write(struct.pack(">I3I", 0x0803, *arr.shape) + arr.tobytes())
    return folder


def test_pictures_and_idx_files_in_json(images, capsys):
    files = [str(images / n) for n in ("boot.png", "pullover.jpg", "two-images-idx3-ubyte.gz")]
    assert main(["predict", *files, "--model", "ms_resnet_mini", "--pretrained", "fashion_mnist", "--json",
                 "--top", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "ms_resnet_mini pretrained=fashion_mnist"
    preds = out["predictions"]
    assert [p["image"] for p in preds] == files[:2] + [f"{files[2]}[0]", f"{files[2]}[1]"]
    assert all(len(p["top"]) == 2 and p["top"][0]["probability"] >= p["top"][1]["probability"] for p in preds)
    # the PNG and the IDX copy of the same pixels give the same answer
    assert preds[0]["top"] == preds[2]["top"]
    if (FMNIST / "t10k-images-idx3-ubyte.gz").is_file():
        assert [p["top"][0]["class"] for p in preds] == ["Ankle boot", "Pullover", "Ankle boot", "Pullover"]


def test_text_output_and_a_saved_folder(images, tmp_path, capsys):
    folder = spikevision.save_pretrained(spikevision.create_model("mlp_spe_mini", pretrained=True), tmp_path / "m")
    assert main(["predict", str(images / "two-images-idx3-ubyte.gz"), "--limit", "1", "--run", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"model {folder} (fashion_mnist, T=2)"
    assert len(lines) == 2 and lines[1].startswith(f"{images / 'two-images-idx3-ubyte.gz'}[0]: ")
    assert lines[1].count("%") == 3
    # the saved folder as a positional RUN, as `spikevision predict IMAGE... RUN`
    assert main(["predict", str(images / "boot.png"), str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"model {folder} (fashion_mnist, T=2)"


@pytest.mark.parametrize("argv,status,message", [
    (["missing.png", "--model", "ms_resnet_mini"], 1, "missing.png: no such image file"),
    (["IMG"], 2, "give the model: --model NAME"),
    (["IMG", "--model", "ms_resnet_mini", "--pretrained", "cifar10"], 1, "no pretrained='cifar10' weights"),
    (["IMG", "--model", "ms_resnet20"], 1, "no pretrained weights for 'ms_resnet20'"),
    (["NOTANIMAGE", "--model", "ms_resnet_mini"], 1, "cannot read"),
])
def test_errors_are_one_line(images, tmp_path, caplog, argv, status, message):
    (tmp_path / "x.txt").write_text("not an image")
    argv = [str(images / "boot.png") if a == "IMG" else str(tmp_path / "x.txt") if a == "NOTANIMAGE" else a
            for a in argv]
    with pytest.raises(SystemExit) as e:
        if main(["predict", *argv]) != 0:
            raise SystemExit(2)
    err = caplog.text  # report_error logs the line (stderr outside pytest)
    code = e.value.code
    if isinstance(code, str):  # user_errors: the message is the exit payload (status 1)
        assert status == 1 and message in code and "\n" not in code, code
    else:
        assert code == status and message in err, err
