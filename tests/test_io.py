"""save and load: an .npz holding exactly u, w and b, read back without pickle."""

import io
import zipfile

import numpy as np
import pytest

from planarflow import init_params, load, save


def test_round_trip_is_exact(tmp_path):
    params = init_params(5, 3, rng=1)
    path = tmp_path / "flow.npz"
    save(path, params)
    loaded = load(path)
    assert set(loaded) == {"u", "w", "b"}
    for k in "uwb":
        np.testing.assert_array_equal(loaded[k], params[k])
        assert loaded[k].dtype == np.float64


def test_file_holds_exactly_the_three_arrays(tmp_path):
    path = tmp_path / "flow.npz"
    save(str(path), init_params(2, rng=0))
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["b.npy", "u.npy", "w.npy"]
    with np.load(path, allow_pickle=False) as data:
        assert data["u"].shape == (2, 2) and data["b"].shape == (2,)


def test_save_writes_exactly_the_given_path(tmp_path):
    save(tmp_path / "no_extension", init_params(1, rng=0))
    assert (tmp_path / "no_extension").exists() and not (tmp_path / "no_extension.npz").exists()


def test_load_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load(tmp_path / "nothing.npz")


# --- load trusts nothing ---------------------------------------------------------------------

def write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def good(K=3, d=2):
    return init_params(K, d, rng=0)


HOSTILE = {
    "not a zip": lambda p: p.write_bytes(b"this is not an npz file at all"),
    "empty file": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(open(write_npz(p, **good()), "rb").read()[:150]),
    "a .npy, not an .npz": lambda p: np.save(open(p, "wb"), np.zeros(3)),
    "missing array": lambda p: write_npz(p, u=good()["u"], w=good()["w"]),
    "extra array": lambda p: write_npz(p, **good(), c=np.zeros(2)),
    "wrong shape": lambda p: write_npz(p, u=good()["u"], w=np.ones((3, 3)), b=good()["b"]),
    "int dtype": lambda p: write_npz(p, u=np.ones((3, 2), dtype=np.int64), w=good()["w"], b=good()["b"]),
    "complex dtype": lambda p: write_npz(p, u=good()["u"] + 0j, w=good()["w"], b=good()["b"]),
    "object array (pickle)": lambda p: write_npz(p, u=np.array([None] * 6, dtype=object).reshape(3, 2),
                                                 w=good()["w"], b=good()["b"]),
    "NaN": lambda p: write_npz(p, u=np.full((3, 2), np.nan), w=good()["w"], b=good()["b"]),
    "zero row of w": lambda p: write_npz(p, u=good()["u"], w=np.zeros((3, 2)), b=good()["b"]),
    "string array": lambda p: write_npz(p, u=np.array([["a", "b"]] * 3), w=good()["w"], b=good()["b"]),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_load_refuses_hostile_files_naming_the_path(case, tmp_path):
    path = tmp_path / "flow.npz"
    HOSTILE[case](path)
    with pytest.raises(ValueError) as info:
        load(path)
    assert str(path) in str(info.value)


def test_load_refuses_a_header_that_declares_a_huge_array(tmp_path):
    # a valid zip whose u.npy header claims 10¹² entries: refused before any allocation
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    header = header + " " * (63 - len(header) % 64) + "\n"
    blob = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + b"\0" * 64
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("u.npy", blob)
        buf = io.BytesIO()
        np.save(buf, good()["w"])
        zf.writestr("w.npy", buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, good()["b"])
        zf.writestr("b.npy", buf.getvalue())
    with pytest.raises(ValueError, match="too large"):
        load(path)


def test_load_of_a_folder_or_a_non_path(tmp_path):
    with pytest.raises(ValueError, match="folder"):
        load(tmp_path)
    with pytest.raises(TypeError, match="path"):
        load(3)


def test_save_refuses_parameters_that_would_not_load_back(tmp_path):
    bad = good()
    bad["b"][0] = np.inf
    with pytest.raises(ValueError, match="params"):
        save(tmp_path / "x.npz", bad)
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(FileNotFoundError, match="folder"):
        save(tmp_path / "no" / "such" / "x.npz", good())


def test_save_is_atomic_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "flow.npz"
    save(path, good())
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError):
        save(path, init_params(3, 2, rng=9))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.npz"]     # no temporary left behind
