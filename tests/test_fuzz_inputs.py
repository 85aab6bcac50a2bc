"""Seeded fuzzing of what users hand the commands: malformed recipes, overrides, studies, model cards and
metrics files. Every one must end with exit status 1 or 2, one error report on stderr (a single line, or a
configuration error's header plus one line per problem), never a traceback, and nothing written.

In-process (``spikevision.cli.main``) so that the 60-odd cases run in seconds; tests/test_signals.py and the
engine tests cover real processes.
"""

import json
import random
import shutil

import pytest
import torch

import spikevision.weights as W
from spikevision.cli import main
from spikevision.models import create_model
from spikevision.train import checkpoint as ck

SEED = 24
BAD_SCALARS = ["abc", "-1", "0", "1e400", ".nan", "-.inf", "[]", "{}", "[1, [2]]", "null", "true", "'\\x00'"]
# keys whose values the fuzzer breaks; each with a value it must never accept
KEYS = ["model.T", "model.num_classes", "model.in_chans", "model.img_size", "model.widths", "model.dropout",
        "model.pool", "model.neuron", "optim.lr", "optim.momentum", "sched.milestones", "sched.warmup_epochs",
        "train.epochs", "train.label_smoothing", "data.batch_size", "data.name", "run.name"]


def _laughs(rng: random.Random) -> str:
    width, depth = rng.randint(8, 12), rng.randint(6, 9)
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


def _bad_recipes(rng: random.Random) -> list[str]:
    """Recipes that are broken in one of many ways (each generated with random sizes and positions)."""
    base = "model: {name: spiking_cnn_mini, T: 2}\ndata: {name: fashion_mnist}\ntrain: {epochs: 1}\n"
    out = [
        _laughs(rng),
        f"model: &m {{name: spiking_cnn_mini, widths: [*m]}}\n",
        "a: " + "[" * rng.randint(100, 30000) + "]" * 3,
        "model:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(rng.randint(70, 400))),
        base + f"{rng.choice(['modle', 'trian', 'optimizer', 'runs'])}: {{epochs: 1}}\n",
        base.replace("T: 2", f"T: {rng.choice(['-3', '0', '2.5', 'abc', '10000000'])}"),
        base.replace("T: 2", f"widths: [{rng.randint(-9, -1)}, 4]"),
        base.replace("T: 2", f"img_size: {rng.choice(['0', 'big', '[28]'])}"),
        base.replace("spiking_cnn_mini", rng.choice(["resnet50", "ms_resnet_tiny", "", "null"])),
        base + f"sched: {{name: step, milestones: [{rng.randint(-5, 0)}]}}\n",
        base + f"optim: {{lr: {rng.choice(['.nan', '-0.1', 'fast', '.inf'])}}}\n",
        "- " + "\n- ".join(rng.choice(["model", "train", "1"]) for _ in range(rng.randint(1, 5))) + "\n",
        rng.choice(["42\n", "'just a string'\n", "null\n", "~\n"]),
        base[: rng.randint(5, len(base) - 5)] + "[unclosed: {\n",
        "model: [1, 2, 3]\n",
        "data: " + rng.choice(["5", "abc", "[1]"]) + "\n",
        base.replace("T: 2", f"neuron_params: {{{rng.choice(['nosuch', 'tau_m', 'vth'])}: 1}}"),
        base.replace("T: 2", f"pool: {rng.choice(['median', 'MAX', 'sum'])}"),
        base.replace("T: 2", f"widths: [{rng.randint(10 ** 6, 10 ** 7)}, {rng.randint(10 ** 6, 10 ** 7)}]"),
        "\t" + base,
    ]
    return out


def _bad_overrides(rng: random.Random) -> list[list[str]]:
    picks = rng.sample(KEYS, 10)
    out = [[f"{k}={rng.choice(BAD_SCALARS) if k not in ('data.name', 'run.name') else rng.choice(['', 'a/b', '..'])}"]
           for k in picks]
    out += [["model.widths=&a [*a]"], ["model.T="], [f"model.T={10 ** rng.randint(6, 9)}"], ["epochs=3"],
            ["train.epochs"], [f"model.neuron_params.{rng.choice(['nosuch', 'theta'])}=1"],
            ["model.widths=[" + "[" * rng.randint(70, 500) + "]"]]
    return out


def _bad_studies(rng: random.Random) -> list[str]:
    return [
        "arms: &a {x: *a}\n",
        _laughs(rng),
        "arms: {}\n",
        f"seeds: [{rng.choice(['-1', 'a', '0, 0'])}]\narms: {{x: {{model.name: spiking_cnn_mini}}}}\n",
        f"armz: {{x: {{}}}}\n",
        f"arms: {{x: {{model.T: {rng.choice(['0', 'abc', '-2'])}}}}}\n",
        "arms: {'a/b': {}}\n",
        "- not\n- a mapping\n",
    ]


def _bad_cards(rng: random.Random) -> list[str]:
    return [
        json.dumps([1, 2, 3]),
        "[" * rng.randint(5000, 100000) + "]" * 10,
        json.dumps({"model": "mlp_spe_mini", "model_kwargs": {"dim": 3 * rng.randint(10 ** 7, 10 ** 8)}}),
        json.dumps({"model": "mlp_spe_mini", "model_kwargs": {"T": rng.randint(10 ** 8, 10 ** 9)}}),
        json.dumps({"model": "mlp_spe_mini", "model_kwargs": {"dim": rng.choice(["wide", None, [3]])}}),
        json.dumps({"model": "other_model", "model_kwargs": {}}),
        "{not json",
    ]


def _bad_metrics(rng: random.Random) -> list[str]:
    good = {"epoch": 0, "step": 10, "train_loss": 2.3, "test_top1": 10.0, "train_time_s": 5.0}
    out = []
    for key, value in [("epoch", None), ("epoch", "Infinity"), ("epoch", [1]), ("train_time_s", [1, 2]),
                       ("test_top1", "NaN"), ("epoch", -rng.randint(1, 9)), ("step", {"a": 1}), ("epoch", 1.5)]:
        rec = dict(good, **{key: value})
        text = json.dumps(rec)
        for special in ("Infinity", "NaN"):  # JSON's non-standard numbers, as Python writes them
            text = text.replace(f'"{special}"', special)
        out.append(json.dumps(good) + "\n" + text + "\n")
    out += ["[1, 2]\n", "{\"epoch\": 0,\n", "\x00\x01binary\n"]
    return out


def _call(argv, caplog, capsys) -> tuple[int, str]:
    caplog.clear()
    capsys.readouterr()
    try:
        status = main(argv)
        err = capsys.readouterr().err + caplog.text
    except SystemExit as e:  # user_errors: the message is the exit "code" (printed by Python, status 1)
        status, err = (1, str(e.code)) if isinstance(e.code, str) else (e.code, capsys.readouterr().err)
    return status, err


def _assert_one_report(status: int, err: str, command: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert status in (1, 2), (status, err)
    assert lines and "Traceback" not in err and "Error:" not in lines[0][:20], err
    assert any(line.startswith(f"spikevision {command}: ") or f" spikevision {command}: " in line for line in lines), err
    assert all(line.startswith("  - ") for line in lines[1:]), err  # a config error's list, else one line
    assert len(err) < 2000, err[:500]


def _snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_fuzzed_recipes_and_overrides(sandbox, caplog, capsys):
    rng = random.Random(SEED)
    (sandbox / "ok.yaml").write_text("model: {name: spiking_cnn_mini, T: 2}\ntrain: {epochs: 1}\n")
    cases = [[f"r{i}.yaml"] for i in range(len(_bad_recipes(random.Random(SEED))))]
    for i, text in enumerate(_bad_recipes(rng)):
        (sandbox / f"r{i}.yaml").write_text(text)
    cases += [["ok.yaml", *items] for items in _bad_overrides(rng)]
    assert len(cases) >= 35
    before = _snapshot(sandbox)
    for argv in cases:
        status, err = _call(["train", *argv, "run.out_dir=runs"], caplog, capsys)
        _assert_one_report(status, err, "train")
    assert _snapshot(sandbox) == before


def test_fuzzed_studies(sandbox, caplog, capsys):
    rng = random.Random(SEED + 1)
    for i, text in enumerate(_bad_studies(rng)):
        (sandbox / f"s{i}.yaml").write_text(text)
    # a valid study whose only run has a truncated checkpoint
    (sandbox / "ok.yaml").write_text("settings: {train.epochs: 1, model.T: 2}\narms: {a: {model.name: spiking_cnn_mini}}\n")
    last = sandbox / "runs" / "ok" / "a-s0" / ck.CHECKPOINT_DIR / ck.LAST
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(200)))
    before = _snapshot(sandbox)
    for path in sorted(sandbox.glob("s*.yaml")) + [sandbox / "ok.yaml"]:
        status, err = _call(["study", str(path), "--status", "--out-dir", "runs", "--results-dir", "results"],
                            caplog, capsys)
        _assert_one_report(status, err, "study")
    assert "damaged" in err and "last.pt" in err
    assert _snapshot(sandbox) == before


def test_fuzzed_model_cards(sandbox, monkeypatch, caplog, capsys):
    from PIL import Image

    rng = random.Random(SEED + 2)
    weights = sandbox / "weights"
    weights.mkdir()
    shutil.copy(W.WEIGHTS_DIR / "mlp_spe_mini.fashion_mnist.safetensors", weights)
    monkeypatch.setattr(W, "WEIGHTS_DIR", weights)
    Image.new("L", (28, 28), 128).save(sandbox / "shirt.png")
    (weights / "mlp_spe_mini.fashion_mnist.json").write_text("{}")
    before = _snapshot(sandbox)
    for text in _bad_cards(rng):
        (weights / "mlp_spe_mini.fashion_mnist.json").write_text(text)
        status, err = _call(["predict", "shirt.png", "--model", "mlp_spe_mini", "--pretrained", "fashion_mnist"],
                            caplog, capsys)
        _assert_one_report(status, err, "predict")
    assert _snapshot(sandbox) == before


def test_fuzzed_metrics_files(sandbox, caplog, capsys):
    rng = random.Random(SEED + 3)
    run = sandbox / "run"
    torch.manual_seed(0)
    model = create_model("spiking_cnn_mini", T=2)
    ck.save_checkpoint(run / ck.CHECKPOINT_DIR / ck.LAST, {
        ck.VERSION_KEY: ck.FORMAT_VERSION, ck.MODEL_KEY: model.state_dict(), ck.MODEL_NAME_KEY: "spiking_cnn_mini",
        ck.MODEL_KWARGS_KEY: {"T": 2}, ck.CONFIG_KEY: {}, ck.EPOCH_KEY: 1, ck.STEP_KEY: 1})
    for text in _bad_metrics(rng):
        (run / ck.METRICS_FILE).write_text(text)
        before = _snapshot(sandbox)
        status, err = _call(["report", str(run)], caplog, capsys)
        _assert_one_report(status, err, "report")
        assert _snapshot(sandbox) == before


def test_enough_cases():
    rng = random.Random(SEED)
    total = (len(_bad_recipes(rng)) + len(_bad_overrides(rng)) + len(_bad_studies(rng)) + len(_bad_cards(rng))
             + len(_bad_metrics(rng)))
    assert total >= 50, total
