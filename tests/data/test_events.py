import numpy as np
import pytest

from spikevision.data.errors import CorruptFileError
from spikevision.data.events import (
    Events,
    decode_dvs128_address,
    encode_dvs128_address,
    events_to_frames,
    load_dvs128_events,
    read_aedat2,
    write_aedat2,
)


def _frames_reference(t, x, y, p, F, split_by, H=128, W=128):
    """Plain-loop SpikingJelly rule: segment index ranges, then count per (p, y, x)."""
    N = len(t)
    j_l, j_r = [0] * F, [0] * F
    if split_by == "number":
        di = N // F
        for i in range(F):
            j_l[i], j_r[i] = i * di, i * di + di
    else:
        dt = (t[-1] - t[0]) // F
        for i in range(F):
            lo, hi = t[0] + dt * i, t[0] + dt * (i + 1)
            inside = [k for k in range(N) if lo <= t[k] < hi]
            j_l[i], j_r[i] = (inside[0], inside[-1] + 1) if inside else (0, 0)
        j_l[F - 1] = next(k for k in range(N) if t[k] >= t[0] + dt * (F - 1))
    j_r[F - 1] = N
    out = np.zeros((F, 2, H, W), np.int64)
    for i in range(F):
        for k in range(j_l[i], j_r[i]):
            out[i, p[k], y[k], x[k]] += 1
    return out


def test_aedat2_decodes_written_events(tmp_path, events_rng):
    rng = np.random.default_rng(1)
    t, x, y, p = events_rng(rng, 37)
    write_aedat2(tmp_path / "a.aedat", t, encode_dvs128_address(x, y, p), header="# line two\r\n# line three\r\n")
    tt, addr = read_aedat2(tmp_path / "a.aedat")
    assert tt.tolist() == t.tolist()
    dx, dy, dp = decode_dvs128_address(addr)
    assert dx.tolist() == x.tolist() and dy.tolist() == y.tolist() and dp.tolist() == p.tolist()


def test_address_bits_by_hand(tmp_path):
    # x=5, y=9, ON: address = 9 << 8 | 5 << 1 | 1 = 0x090B; event bytes big-endian addr then timestamp
    body = bytes.fromhex("0000090B" "00000064")
    (tmp_path / "h.aedat").write_bytes(b"#!AER-DAT2.0\r\n# x\r\n" + body)
    ev = load_dvs128_events(tmp_path / "h.aedat", "raw")
    assert (ev.t[0], ev.x[0], ev.y[0], ev.p[0]) == (100, 5, 9, 1)
    sj = load_dvs128_events(tmp_path / "h.aedat", "spikingjelly")
    assert (sj.x[0], sj.y[0], sj.p[0]) == (127 - 9, 127 - 5, 0)


def test_truncated_and_wrong_version_named(tmp_path):
    write_aedat2(tmp_path / "t.aedat", np.arange(4), np.arange(4))
    data = (tmp_path / "t.aedat").read_bytes()
    (tmp_path / "t.aedat").write_bytes(data[:-3])
    with pytest.raises(CorruptFileError, match=r"t\.aedat.*truncated"):
        read_aedat2(tmp_path / "t.aedat")
    (tmp_path / "v3.aedat").write_bytes(b"#!AER-DAT3.1\r\n" + bytes(16))
    with pytest.raises(CorruptFileError, match="v3.aedat.*version 3.1"):
        read_aedat2(tmp_path / "v3.aedat")
    (tmp_path / "e.aedat").write_bytes(b"#!AER-DAT2.0\r\n")
    with pytest.raises(CorruptFileError, match="no events"):
        read_aedat2(tmp_path / "e.aedat")


@pytest.mark.parametrize("split_by", ["number", "time"])
@pytest.mark.parametrize("n,F", [(23, 4), (40, 5), (3, 5), (7, 1)])
def test_frames_match_plain_loop(events_rng, split_by, n, F):
    rng = np.random.default_rng(n * F)
    t, x, y, p = events_rng(rng, n)
    got = events_to_frames(Events(t, x, y, p), F, split_by)
    if split_by == "time" and (t[-1] - t[0]) // F == 0:
        expected = np.zeros_like(got)
        np.add.at(expected, (F - 1, p, y, x), 1)
    else:
        expected = _frames_reference(t, x, y, p, F, split_by)
    assert got.shape == (F, 2, 128, 128) and np.array_equal(got, expected)
    assert got.sum() == n


def test_number_split_by_hand():
    # 7 events, 3 frames: floor(7/3)=2 -> frames take events [0,2), [2,4), [4,7)
    x = np.array([0, 0, 1, 1, 2, 2, 2])
    ev = Events(np.arange(7), x, np.zeros(7, int), np.array([1, 0, 1, 1, 0, 0, 1]))
    f = events_to_frames(ev, 3, "number", 1, 3)
    assert f[:, :, 0, :].tolist() == [[[1, 0, 0], [1, 0, 0]], [[0, 0, 0], [0, 2, 0]], [[0, 0, 2], [0, 0, 1]]]


def test_time_split_by_hand():
    # t = 0..10, F = 2: dt = 5; frame 0 holds t in [0, 5), frame 1 the rest
    t = np.array([0, 1, 4, 5, 9, 10])
    ev = Events(t, np.arange(6), np.zeros(6, int), np.ones(6, int))
    f = events_to_frames(ev, 2, "time", 1, 6)
    assert f[0, 1, 0].tolist() == [1, 1, 1, 0, 0, 0] and f[1, 1, 0].tolist() == [0, 0, 0, 1, 1, 1]


def test_out_of_range_events_rejected():
    with pytest.raises(ValueError, match="outside"):
        events_to_frames(Events(np.arange(2), np.array([0, 128]), np.zeros(2, int), np.zeros(2, int)), 1)
    with pytest.raises(ValueError, match="frames"):
        events_to_frames(Events(np.arange(2), np.zeros(2, int), np.zeros(2, int), np.zeros(2, int)), 0)


def test_spikingjelly_npz_events(tmp_path):
    # SpikingJelly's events_np files already hold its orientation; "raw" undoes it.
    np.savez(tmp_path / "s.npz", t=np.array([1, 2]), x=np.array([3, 4]), y=np.array([5, 6]), p=np.array([0, 1]))
    sj = load_dvs128_events(tmp_path / "s.npz")
    assert sj.x.tolist() == [3, 4] and sj.p.tolist() == [0, 1]
    raw = load_dvs128_events(tmp_path / "s.npz", "raw")
    assert raw.x.tolist() == [127 - 5, 127 - 6] and raw.y.tolist() == [127 - 3, 127 - 4] and raw.p.tolist() == [1, 0]
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CorruptFileError, match="bad.npz"):
        load_dvs128_events(tmp_path / "bad.npz")


def test_headerless_file_read_as_2_0(tmp_path):
    (tmp_path / "n.aedat").write_bytes(bytes.fromhex("00000003" "0000000A" "00007F00" "0000000B"))
    ev = load_dvs128_events(tmp_path / "n.aedat", "raw")
    assert ev.t.tolist() == [10, 11] and ev.x.tolist() == [1, 0] and ev.y.tolist() == [0, 127]
    assert ev.p.tolist() == [1, 0]
