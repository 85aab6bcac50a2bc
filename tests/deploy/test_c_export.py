"""C export: the generated library compiles with the system C compiler (C99, -pedantic, warnings as
errors) and its main.c, fed raw uint8 images on stdin, prints the Python integer engine's outputs bit
for bit; no floating point, no multiplication in the layers the MFI audit calls multiplication-free."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deploy_nets import MSNet, randomize_bn, small_cnn
from spikevision.data.constants import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from spikevision.deploy.targets.c.codegen import generate_c
from spikevision.deploy.targets.c.export import CExportError, export_c, input_lut, lut_images
from spikevision.deploy.engine import EngineConfig

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")


def _bars_u8(n: int, g: torch.Generator, side: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 4-class images: a bright horizontal/vertical bar in the top/bottom half, on noise."""
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randint(0, 80, (n, 1, side, side), generator=g, dtype=torch.int64)
    pos = torch.randint(0, side // 2, (n,), generator=g)
    for i in range(n):
        r = int(pos[i]) + (side // 2 if y[i] >= 2 else 0)
        if y[i] % 2 == 0:
            x[i, 0, r, :] += 170
        else:
            x[i, 0, :, r] += 170
    return x.clamp(0, 255).to(torch.uint8), y


def _trained_cnn(g: torch.Generator) -> nn.Module:
    """The toy CNN trained 30 steps on the bars, with max pooling: a tiny trained model."""
    torch.manual_seed(7)
    model = small_cnn(T=3, c=6, classes=4, pool=nn.MaxPool2d(2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(30):
        u8, y = _bars_u8(64, g)
        loss = F.cross_entropy(model(lut_images(u8, FASHION_MNIST_MEAN, FASHION_MNIST_STD)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _compile_and_run(out_dir, name: str, images: torch.Tensor) -> list[list[int]]:
    exe = out_dir / name
    cmd = [CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1", "-o", str(exe),
           str(out_dir / "main.c"), str(out_dir / f"{name}.c")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    p = subprocess.run([str(exe)], input=images.contiguous().numpy().tobytes(), capture_output=True, check=True)
    return [[int(v) for v in line.split()] for line in p.stdout.decode().splitlines()]


def _function_bodies(c_source: str) -> list[tuple[list[str], str]]:
    """Per generated layer function: the layers its comment names (a conv with its fused pooling: two), its body."""
    pattern = r"/\* layers? ('[^:]*'): .*?\*/\nstatic void sv_op\d+\([^)]*\)\n\{\n(.*?)\n\}\n"
    return [(re.findall(r"'([^']*)'", m.group(1)), m.group(2)) for m in re.finditer(pattern, c_source, re.S)]


@pytest.mark.parametrize("bits", [16, 8, 20])
def test_exported_c_equals_python_engine_bit_for_bit(tmp_path, bits):
    g = torch.Generator().manual_seed(0)
    model = _trained_cnn(g)
    u8, y = _bars_u8(48, g)
    x = lut_images(u8, FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    exp = export_c(model, x[:16], tmp_path, name="bars", cfg=EngineConfig(weight_bits=bits),
                   mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD)
    rows = _compile_and_run(tmp_path, "bars", u8)
    with torch.no_grad():
        ref = exp.integer_model.forward_q(x)  # float64 fixed point: sum over T / T
        float_pred = model(x).argmax(-1)
    classes = torch.tensor([r[0] for r in rows])
    numerators = torch.tensor([r[1:] for r in rows], dtype=torch.int64)
    assert len(rows) == 48
    assert torch.equal(numerators.double() / exp.program.output.divisor, ref)
    assert torch.equal(classes, ref.argmax(-1))
    assert (classes == y).float().mean() > 0.6  # the toy model learned something
    assert (classes == float_pred).float().mean() >= 0.95
    assert exp.ram_bytes > 0 and exp.weight_bytes < exp.flash_bytes
    wbytes = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1)
    assert exp.weight_bytes == wbytes * {8: 1, 16: 2, 20: 4}[bits]  # 20-bit weights are stored as int32


def test_residual_net_export_and_what_the_c_code_may_execute(tmp_path):
    torch.manual_seed(3)
    model = randomize_bn(MSNet(T=2))
    u8 = torch.randint(0, 256, (12, 2, 8, 8), dtype=torch.uint8)
    mean, std = (0.5, 0.25), (0.3, 0.2)
    x = lut_images(u8, mean, std)
    exp = export_c(model, x, tmp_path, name="msnet", mean=mean, std=std)
    rows = _compile_and_run(tmp_path, "msnet", u8)
    with torch.no_grad():
        ref = exp.integer_model.forward_q(x)
    assert torch.equal(torch.tensor([r[1:] for r in rows]).double() / exp.program.output.divisor, ref)
    source = (tmp_path / "msnet.c").read_text()
    code = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    assert not re.search(r"\b(float|double|malloc|calloc|free)\b", code)
    functions = _function_bodies(source)
    assert sorted(sum((layers for layers, _ in functions), [])) == sorted(layer for layer, _, _ in exp.layers)
    mfi = {layer for layer, _, ok in exp.layers if ok}
    assert {"block1.conv1", "block1.conv2", "block2.conv1", "lif"} <= mfi
    for layers, body in functions:
        if set(layers) <= mfi:
            assert not re.search(r"[*/%]", body), f"{layers} multiply or divide in C"
    _infer_q_refuses_input_outside_the_table(tmp_path, exp, x)
    # memory: int32 where the intervals allow, membranes in registers, the shortcut conv run early
    assert "int32_t a32[" in source and not re.search(r"\bst->v\[", source)
    assert "spikes packed 8 to a byte" in source  # trains only event-driven convs read: bits
    fast = generate_c(exp.program, "msnet", 16, lut=input_lut(mean, std, 24), memory="fast")  # the native layout
    assert exp.ram_bytes < fast.ram_bytes
    order = [op.layer for op in exp.program.ops]
    assert order.index("block1.shortcut.0") < order.index("block1.conv1")
    stem = next(body for layers, body in functions if layers == ["stem"])
    assert "*" in stem  # the analog first layer: an integer multiply-accumulate, reported as such
    assert "MFI audit: multiplies (multiply-accumulate on real-valued input" in source
    # the input table is the engine's quantiser on each pixel value
    lut = input_lut(mean, std, 24)
    assert lut[1][200] == round(float(lut_images(torch.full((1, 2, 1, 1), 200, dtype=torch.uint8), mean, std)[0, 1])
                                * 2**24)


def _infer_q_refuses_input_outside_the_table(tmp_path, exp, x: torch.Tensor) -> None:
    """``<name>_infer_q`` runs input inside the pixel table's range (what the buffers' widths are proven for)
    and returns -1 for input outside it."""
    lib_path = tmp_path / "libmsnet.so"
    subprocess.run([CC, "-std=c99", "-O1", "-shared", "-fPIC", "-o", str(lib_path), str(tmp_path / "msnet.c")],
                   check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.msnet_infer_q.restype = ctypes.c_int
    state = torch.zeros(lib.msnet_state_bytes() // 8 + 1, dtype=torch.int64)
    logits = torch.zeros(exp.program.output.numel, dtype=torch.int64)
    xq = exp.integer_model.quantize(x[:1]).to(torch.int64).contiguous()
    with torch.no_grad():
        ref = exp.integer_model.forward_q(x[:1])
    assert lib.msnet_infer_q(ctypes.c_void_p(xq.data_ptr()), ctypes.c_void_p(logits.data_ptr()),
                             ctypes.c_void_p(state.data_ptr())) == int(ref.argmax())
    xq[0, 0, 0, 0] = 1 << 40  # beyond the table: the int32 buffers could not hold what it leads to
    assert lib.msnet_infer_q(ctypes.c_void_p(xq.data_ptr()), ctypes.c_void_p(logits.data_ptr()),
                             ctypes.c_void_p(state.data_ptr())) == -1


def test_export_refuses_what_c_cannot_express_and_writes_nothing(tmp_path):
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = nn.Parameter(torch.rand(6, 1, 1))

        def forward(self, x):
            return torch.sigmoid(x * self.att) * x

    model = randomize_bn(small_cnn(c=6))
    model.insert(4, Gate())
    with pytest.raises(CExportError, match="'4' runs as a float fallback"):
        export_c(model, torch.rand(2, 1, 8, 8), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="C identifier"):
        export_c(model, torch.rand(2, 1, 8, 8), tmp_path / "out", name="my-net")


#: a model of each family the C target used to refuse: the spiking MLP (transposes and concatenations), GAC
#: (its gate), and an event-camera model at its own T (time-major int64 input, main.c reading fixed point)
ZOO_C = {
    "mlp_spe_mini": ({"T": 2, "dim": 6}, (1, 28, 28)),
    "gac_ms_resnet_mini": ({"T": 2, "layers": (1, 1), "widths": (4, 8)}, (1, 16, 16)),
    "ms_resnet20_dvs": ({"T": 2}, (2, 2, 8, 8)),
}


@pytest.mark.parametrize("name", list(ZOO_C))
def test_zoo_families_export_to_c_bit_exact(tmp_path, name):
    from spikevision.models import create_model

    kwargs, shape = ZOO_C[name]
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, **kwargs), seed=0, gamma=(0.8, 1.6)).eval()
    g = torch.Generator().manual_seed(1)
    if name.endswith("_dvs"):
        x = torch.randint(0, 3, (shape[0], 5, *shape[1:]), generator=g).float()  # event counts, [T, B, ...]
        exp = export_c(model, x, tmp_path, name="net", schedule="steps")  # frame t read at step t
        assert exp.schedule == "steps" and "one time step at a time" in (tmp_path / "net.c").read_text()
        assert "int net_infer(" not in (tmp_path / "net.h").read_text()  # images only: no pixel table
        with torch.no_grad():
            xq = exp.integer_model.quantize(x).to(torch.int64).transpose(0, 1).contiguous()  # [B, T, ...]
        stdin = xq.numpy().astype("<i8").tobytes()
    else:
        u8 = torch.randint(0, 256, (5, *shape), generator=g, dtype=torch.uint8)
        mean, std = (0.3,) * shape[0], (0.4,) * shape[0]
        x = lut_images(u8, mean, std)
        exp = export_c(model, x, tmp_path, name="net", mean=mean, std=std)
        stdin = u8.numpy().tobytes()
        if name.startswith("gac"):  # TA's MLP mixes the steps: no step-at-a-time schedule, and it says why
            with pytest.raises(CExportError, match="one time step at a time: 'encoder' \\(GAC's gate"):
                export_c(model, x, tmp_path / "steps", name="net", mean=mean, std=std, schedule="steps")
    exe = tmp_path / "net_exe"
    subprocess.run([CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1", "-o", str(exe),
                    str(tmp_path / "main.c"), str(tmp_path / "net.c")], check=True, capture_output=True, text=True)
    p = subprocess.run([str(exe)], input=stdin, capture_output=True, check=True, timeout=600)
    rows = [[int(v) for v in line.split()] for line in p.stdout.decode().splitlines()]
    with torch.no_grad():
        ref = exp.integer_model.forward_q(x)
    assert len(rows) == 5
    assert torch.equal(torch.tensor([r[1:] for r in rows]).double() / exp.program.output.divisor, ref)
    source = (tmp_path / "net.c").read_text()
    mfi = {layer for layer, _, ok in exp.layers if ok}
    for layers, body in _function_bodies(source):
        if set(layers) <= mfi:
            assert not re.search(r"[*/%]", body), f"{layers} multiply or divide in C"


@pytest.mark.parametrize("name", ["main", "sv", "sv_model", "int", "9lives", "a-b", "n\u00e4me"])
def test_c_names_that_collide_or_are_not_identifiers_are_refused(tmp_path, name):
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="name"):
        export_c(randomize_bn(small_cnn(c=4)), x, tmp_path / "out", name=name)
    assert not (tmp_path / "out").exists()


def test_paths_in_header_comments_cannot_inject_code(tmp_path):
    """A header line (the run path) holding ``*/``, a newline and C code stays inside the comment."""
    x = torch.rand(2, 1, 8, 8)
    evil = "runs/x */\nint injected(void) { return 42; }\n/* "
    export_c(randomize_bn(small_cnn(c=4)), x, tmp_path, name="net", header_lines=[f"Model: from {evil}"])
    for f in ("net.c", "net.h"):
        code = re.sub(r"/\*.*?\*/", "", (tmp_path / f).read_text(), flags=re.S)
        assert "injected" not in code
    subprocess.run([CC, "-std=c99", "-pedantic", "-Wall", "-Werror", "-c", "-o", str(tmp_path / "net.o"),
                    str(tmp_path / "net.c")], check=True, capture_output=True, text=True)
