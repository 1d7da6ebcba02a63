"""Saving and loading flows (and training checkpoints) as ``.npz`` files that are never unpickled.

``save(path, params)`` writes an archive holding exactly the float64 arrays u (K, d), w (K, d),
b (K,). ``load(path)`` trusts nothing: it reads the archive with the zip and ``.npy`` parsers
itself (no ``allow_pickle``), checks every member's declared dtype and shape before reading its
bytes (so a hostile header cannot make it allocate gigabytes), and validates the values as
``check_params`` does. Writes are atomic: a temporary file in the same folder, then os.replace,
so a crash mid-write leaves the old file or the new one, never half of one.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from .validation import PARAM_KEYS, _describe, check_params

MAX_ENTRIES = 10_000_000        # refuse to read any member larger than this many numbers


def _check_path(path, name="path"):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got {_describe(path)}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError(f"{name}: expected a file path, got an empty string")
    return path


def _atomic_savez(path, arrays):
    """Write ``arrays`` (name -> ndarray) to ``path`` as an .npz, atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path: the folder {folder!r} of {path!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_member(zf, info, path, want):
    """Parse one ``.npy`` member of an open zip, of dtype ``want``, without trusting its header."""
    with zf.open(info) as fp:
        try:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as exc:
            raise ValueError(f"{path}: member {info.filename!r} is not a valid .npy array ({exc})") from None
        if dtype.hasobject or dtype.newbyteorder("=") != np.dtype(want).newbyteorder("="):
            raise ValueError(f"{path}: array {info.filename[:-4]!r} has dtype {dtype}, expected {np.dtype(want)}")
        count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
        if count > MAX_ENTRIES:
            raise ValueError(f"{path}: array {info.filename[:-4]!r} declares shape {shape}, too large")
        nbytes = count * dtype.itemsize
        data = fp.read(nbytes + 1)
    if len(data) != nbytes:
        raise ValueError(
            f"{path}: array {info.filename[:-4]!r} should hold {nbytes} bytes for shape {shape}, "
            f"holds {len(data)} (truncated or padded file)"
        )
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.astype(np.dtype(want))     # native byte order, writable, C-contiguous copy


def _read_npz(path, expected):
    """Read exactly the arrays of ``expected`` (name -> dtype) from the .npz at ``path``."""
    path = _check_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no such file {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"path: {path!r} is a folder, expected an .npz file")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not an .npz archive (a zip of .npy arrays): {exc}") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names) or not all(n.endswith(".npy") for n in names):
            raise ValueError(f"{path}: expected only .npy members, each once; found {names}")
        found = {n[:-4] for n in names}
        if found != set(expected):
            missing = sorted(set(expected) - found)
            extra = sorted(found - set(expected))
            raise ValueError(
                f"{path}: expected exactly the arrays {list(expected)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra}" if extra else "")
            )
        out = {}
        for info in infos:
            if info.file_size > MAX_ENTRIES * 8 + 4096:
                raise ValueError(f"{path}: member {info.filename!r} is implausibly large ({info.file_size} bytes)")
            try:
                name = info.filename[:-4]
                out[name] = _read_member(zf, info, path, expected[name])
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
                raise ValueError(f"{path}: member {info.filename!r} cannot be read: {exc}") from None
    return out


def save(path, params):
    """Write ``params`` to ``path`` (exactly that name) as an .npz holding u, w and b.

    Refuses parameters that ``load`` would refuse (wrong keys or shapes, NaN/inf, a zero row of w).
    The write is atomic.
    """
    path = _check_path(path)
    params, _, _ = check_params(params)
    _atomic_savez(path, {k: np.ascontiguousarray(params[k], dtype=np.float64) for k in PARAM_KEYS})


def load(path):
    """Read a flow written by ``save``: a dict of float64 arrays u (K, d), w (K, d), b (K,).

    Raises FileNotFoundError for a missing file and ValueError, naming the path and the problem,
    for anything else: not a zip, truncated, other or missing arrays, wrong dtypes or shapes,
    NaN/inf, a zero row of w. Never unpickles.
    """
    path = _check_path(path)
    arrays = _read_npz(path, dict.fromkeys(PARAM_KEYS, np.float64))
    params, _, _ = check_params(arrays, name=path)
    return params


# --- checkpoints: parameters, optimizer state, history and the random generator ----------------

CHECKPOINT_ARRAYS = dict.fromkeys(
    ("u", "w", "b", "adam_m_u", "adam_m_w", "adam_m_b", "adam_v_u", "adam_v_w", "adam_v_b",
     "loss", "beta", "lr"), np.float64)
CHECKPOINT_ARRAYS["meta"] = np.uint8        # UTF-8 JSON: step, settings, Adam's t, the rng state


def _json_ready(x):
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return {"__ndarray__": x.tolist(), "dtype": str(x.dtype)}
    if isinstance(x, np.integer):
        return int(x)
    return x


def _from_json(x):
    if isinstance(x, dict):
        if "__ndarray__" in x:
            return np.array(x["__ndarray__"], dtype=x["dtype"])
        return {k: _from_json(v) for k, v in x.items()}
    return x


def save_checkpoint(path, params, adam_m, adam_v, adam_t, history, rng, meta):
    """Atomically write a training checkpoint (see ``fit(checkpoint=...)``): the parameters,
    Adam's moments (dicts shaped like params) and step count, the history, the generator."""
    meta = dict(meta, adam_t=adam_t, rng_state=_json_ready(rng.bit_generator.state))
    text = json.dumps(meta).encode("utf-8")
    arrays = {k: params[k] for k in PARAM_KEYS}
    for k in PARAM_KEYS:
        arrays["adam_m_" + k] = adam_m[k]
        arrays["adam_v_" + k] = adam_v[k]
    for k in ("loss", "beta", "lr"):
        arrays[k] = np.asarray(history[k], dtype=np.float64)
    arrays["meta"] = np.frombuffer(text, dtype=np.uint8)
    _atomic_savez(_check_path(path, "checkpoint"), arrays)


def load_checkpoint(path):
    """Read a checkpoint written by ``save_checkpoint``: (params, adam_m, adam_v, history, meta)."""
    arrays = _read_npz(_check_path(path, "resume"), CHECKPOINT_ARRAYS)
    try:
        if arrays["meta"].ndim != 1:
            raise ValueError("not a byte string")
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        meta["rng_state"] = _from_json(meta["rng_state"])
    except (ValueError, KeyError, UnicodeDecodeError, TypeError) as exc:
        raise ValueError(f"{path}: the checkpoint's metadata is unreadable ({exc})") from None
    params, K, d = check_params({k: arrays[k] for k in PARAM_KEYS}, name=path)
    m = {k: arrays["adam_m_" + k] for k in PARAM_KEYS}
    v = {k: arrays["adam_v_" + k] for k in PARAM_KEYS}
    for k in PARAM_KEYS:
        if m[k].shape != params[k].shape or v[k].shape != params[k].shape:
            raise ValueError(f"{path}: optimizer state for {k!r} does not match the parameters' shape")
        if not (np.all(np.isfinite(m[k])) and np.all(np.isfinite(v[k])) and np.all(v[k] >= 0)):
            raise ValueError(f"{path}: optimizer state for {k!r} holds NaN/inf or negative moments")
    history = {k: list(arrays[k]) for k in ("loss", "beta", "lr")}
    if not (len(history["loss"]) == len(history["beta"]) == len(history["lr"])):
        raise ValueError(f"{path}: the checkpoint's history arrays differ in length")
    return params, m, v, history, meta
