"""Cortex-M target: the C export, cross-compiled for the MPS2 boards (Cortex-M4F, Cortex-M7) and run in QEMU,
prints the Python integer engine's logits bit for bit; a model too large for the board and a missing toolchain
are reported in one line that says what to do.

Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm (scripts/setup.sh installs them where
apt is available); skipped without them. The timeouts only catch a hang."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deploy_nets import MixedNet, MSNet, randomize_bn, small_cnn
from spikevision.deploy import export_c
from spikevision.deploy.engine import EngineConfig
from spikevision.deploy.targets.c.export import lut_images
from spikevision.deploy.targets.cortex_m import BOARDS, DoesNotFitError, ToolchainError, build_elf, find_toolchain, \
    memory_use, run_elf
from spikevision.deploy.targets.cortex_m import cortex_m

try:
    TOOLS = find_toolchain()
    SKIP = ""
except ToolchainError as e:
    TOOLS, SKIP = None, f"no Cortex-M toolchain ({e})"
needs_tools = pytest.mark.skipif(TOOLS is None, reason=SKIP)
TIMEOUT_S = 300  # catches a hang only: each build and run takes about a second


def _cnn() -> nn.Module:
    torch.manual_seed(5)
    return randomize_bn(small_cnn(T=3, c=6, classes=4, pool=nn.MaxPool2d(2)), seed=5, gamma=(2.0, 4.0))


def _msnet() -> nn.Module:
    torch.manual_seed(3)
    return randomize_bn(MSNet(T=2))


def _mixed() -> nn.Module:
    torch.manual_seed(1)
    return randomize_bn(MixedNet(T=3))


@needs_tools
@pytest.mark.parametrize("build, shape, bits, board, schedule", [
    (_mixed, (2, 12, 12), 16, "mps2-an386", "steps"),  # every layer kind (divisions, multiplies, soft reset,
                                                       # BNTT), run one time step at a time
    (_msnet, (2, 8, 8), 8, "mps2-an500", "layers"),    # residual net with a projection shortcut, int8 weights
    (_cnn, (1, 8, 8), 16, "mps2-an500", "layers"),     # convs with fused max pooling (the quickstart's shape)
], ids=["mixed-steps-m4", "msnet-int8-m7", "cnn-m7"])
def test_cortex_m_run_equals_python_engine_bit_for_bit(tmp_path, build, shape, bits, board, schedule):
    model = build()
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (6, *shape), generator=g, dtype=torch.uint8)
    mean, std = (0.3,) * shape[0], (0.4,) * shape[0]
    x = lut_images(u8, mean, std)
    exp = export_c(model, x, tmp_path / "c", name="net", cfg=EngineConfig(weight_bits=bits), mean=mean, std=std,
                   schedule=schedule)
    assert exp.schedule == schedule
    elf = build_elf(tmp_path / "c", "net", BOARDS[board], tmp_path / "build", timeout_s=TIMEOUT_S)
    result = run_elf(elf, BOARDS[board], u8.numpy(), timeout_s=TIMEOUT_S)
    with torch.no_grad():
        ref = exp.integer_model.forward_q(x)  # float64 fixed point: the sum over T / T
    logits = torch.from_numpy(result.logits)
    assert torch.equal(logits.double() / exp.program.output.divisor, ref)
    assert torch.equal(torch.from_numpy(result.classes), ref.argmax(-1))
    assert len({tuple(row) for row in result.logits.tolist()}) > 1, "a dead network tests nothing"
    assert (result.instructions > 1000).all() and result.instructions_per_tick == pytest.approx(40, rel=0.01)
    mem = memory_use(elf, stack_bytes=result.stack_bytes)
    assert 0 < result.stack_bytes < cortex_m.STACK_BYTES
    assert mem.flash > exp.weight_bytes  # the weights (const, in flash), plus code and tables
    assert mem.ram >= exp.ram_bytes + result.stack_bytes  # its static state, plus the runner's buffers


def _fake_export(folder, name: str, table_bytes: int) -> None:
    """A hand-written 'export' whose const table is ``table_bytes`` long."""
    folder.mkdir()
    upper = name.upper()
    (folder / f"{name}.h").write_text(
        f"#include <stdint.h>\n#define {upper}_CLASSES 2\n#define {upper}_INPUT_SIZE 4\n"
        f"int {name}_infer(const uint8_t *image, int64_t *logits);\n")
    (folder / f"{name}.c").write_text(
        f'#include "{name}.h"\nstatic const uint8_t table[{table_bytes}] = {{1}};\n'
        f"int {name}_infer(const uint8_t *image, int64_t *logits)\n{{\n"
        f"    logits[0] = table[image[0]];\n    logits[1] = table[{table_bytes - 1}];\n    return 0;\n}}\n")


@needs_tools
def test_a_model_too_large_for_the_board_is_named_with_the_overflow(tmp_path):
    _fake_export(tmp_path / "big", "big", (4 << 20) + 1000)
    with pytest.raises(DoesNotFitError, match=r"big does not fit mps2-an386 .*FLASH by [\d,]+ bytes.*--weight-bits 8") \
            as e:
        build_elf(tmp_path / "big", "big", BOARDS["mps2-an386"], tmp_path / "build", timeout_s=TIMEOUT_S)
    assert list(e.value.overflow) == ["FLASH"] and e.value.overflow["FLASH"] >= 1000
    assert not (tmp_path / "build" / "big.mps2-an386.elf").exists()
    _fake_export(tmp_path / "small", "small", 64)  # the same code, small: builds and runs
    elf = build_elf(tmp_path / "small", "small", BOARDS["mps2-an386"], tmp_path / "build", timeout_s=TIMEOUT_S)
    result = run_elf(elf, BOARDS["mps2-an386"], [bytes([0, 1, 2, 3])] * 2, timeout_s=TIMEOUT_S)
    assert result.logits.tolist() == [[1, 0], [1, 0]] and result.classes.tolist() == [0, 0]
    main = tmp_path / "firmware.c"  # a main of one's own (a board's sensor and UART): builds the same way
    main.write_text("#include SV_MODEL_HEADER\nint main(void)\n{\n    static const uint8_t image[SV_INPUT_SIZE];\n"
                    "    int64_t logits[SV_CLASSES];\n    return SV_INFER(image, logits);\n}\n")
    elf = build_elf(tmp_path / "small", "small", BOARDS["mps2-an500"], tmp_path / "fw", main_source=main,
                    timeout_s=TIMEOUT_S)
    assert memory_use(elf).sections[".text"] > 0


def test_missing_toolchain_names_the_apt_packages(monkeypatch):
    monkeypatch.setattr(cortex_m.shutil, "which", lambda tool: None)
    with pytest.raises(ToolchainError, match="missing arm-none-eabi-gcc.*apt-get install gcc-arm-none-eabi "
                                             "libnewlib-arm-none-eabi qemu-system-arm"):
        find_toolchain()
