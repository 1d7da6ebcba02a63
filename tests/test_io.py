"""save and load: an .npz holding exactly u, w and b, read back without pickle."""

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
