"""Files: flows and checkpoints as ``.npz`` archives that are never unpickled, and one safe writer.

``save(path, params)`` writes an archive holding exactly the float64 arrays u (K, d), w (K, d),
b (K,). ``load(path)`` trusts nothing: it opens regular files only (a FIFO or a device is
refused before anything is read), reads the archive with the zip and ``.npy`` parsers itself
(no ``allow_pickle``), checks every member's declared dtype and shape before reading its bytes
(so a hostile header cannot make it allocate gigabytes), bounds everything else it reads, and
validates the values as ``check_params`` does. Every problem is a ValueError naming the path.

Every file planarflow writes — flows, checkpoints, the demo's figures — goes through
``atomic_output``: the path is checked before any work (a folder that exists, a regular file or
nothing there, one the user may write), the data goes to a temporary file beside it which then
replaces the path in one step (os.replace), so an interrupted write leaves the old file or the
new one, never half of one. New files get the mode ``open()`` would give them (0666 minus the
umask, as np.save); a replaced file keeps its mode. Temporaries are named after the path (cut
to 100 characters), the writing process and thread and a random tag, and those of processes that
died before finishing are removed.
"""

import contextlib
import errno
import glob
import json
import os
import stat
import threading
import zipfile

import numpy as np

from .validation import BASE_KEYS, PARAM_KEYS, check_params, describe, param_keys

MAX_MEMBER_ENTRIES = 10_000_000   # refuse to read any array larger than this many numbers
MAX_FILE_BYTES = 2 ** 31          # refuse larger files outright
MAX_META_BYTES = 1 << 20          # a checkpoint's JSON metadata
STATE_DTYPES = ("uint32", "uint64", "int64")   # arrays inside a generator state


def check_path(path, name="path"):
    """A path as a str: refuses non-paths, the empty string and NUL bytes, naming ``name``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got {describe(path)}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        raise TypeError(f"{name}: expected a file path, got {describe(path)}")
    if not path:
        raise ValueError(f"{name}: expected a file path, got an empty string")
    if path.endswith(("/", os.sep)):
        raise ValueError(f"{name}: expected a file path, got {path!r}, which names a folder")
    if "\0" in path:
        raise ValueError(f"{name}: the path {path!r} contains a NUL byte")
    return path


def _has_write_bit(mode):
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def check_output_path(path, name="path"):
    """Check that ``path`` can be written by atomic_output, before any work; returns it as a str.

    The folder must exist and be writable; the path must not be a folder, and if something is
    there it must be a regular file the user may write (a read-only file is refused, even for
    root; a FIFO or a device node is never replaced by a regular file).
    """
    path = check_path(path, name)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{name}: {path!r} is a folder, expected a file path")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{name}: the folder {folder!r} of {path!r} does not exist")
    try:
        fst = os.stat(folder)
    except OSError as exc:
        raise ValueError(f"{name}: cannot use the folder {folder!r} ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK) or not _has_write_bit(fst.st_mode):
        raise ValueError(f"{name}: cannot write in the folder {folder!r} (not writable)")
    if os.path.lexists(path):
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ValueError(f"{name}: cannot use {path!r} ({exc.strerror})") from None
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name}: {path!r} exists and is not a regular file; it would not be replaced")
        if not os.access(path, os.W_OK) or not _has_write_bit(st.st_mode):
            raise ValueError(f"{name}: {path!r} exists and is read-only; it would not be replaced")
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


TMP_PREFIX = 100        # characters of the file's name kept in its temporary's name


def _tmp_prefix(base):
    """The start of the temporaries' names for the file ``base``: ``.{base}.`` with base cut to
    TMP_PREFIX characters, so that a temporary's name stays within the 255-byte limit."""
    return "." + base[:TMP_PREFIX] + "."


def _sweep(folder, base):
    """Remove temporaries ``.{base}.{pid}.….tmp*`` left by processes that no longer exist."""
    prefix = _tmp_prefix(base)
    for tmp in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*.tmp*")):
        pid = os.path.basename(tmp)[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.remove(tmp)


@contextlib.contextmanager
def atomic_output(path, name="path"):
    """``with atomic_output(path) as tmp:`` write the whole file to ``tmp``; on leaving the block
    it replaces ``path`` in one step (or, on any exception, is removed). ``tmp`` ends with the
    path's own extension, so writers that choose a format by extension choose the right one.
    The temporary's name is unique to the process, the thread and the call, so writers of one
    path never share one: concurrent writers leave exactly one complete file, the last to finish.
    Every OSError raised names ``path``."""
    path = check_output_path(path, name)
    target = os.path.realpath(path)                      # a symlink: write the file it points to
    folder, base = os.path.split(target)
    _sweep(folder, base)
    ext = os.path.splitext(base)[1]
    unique = f"{os.getpid()}.{threading.get_ident():x}.{os.urandom(4).hex()}"
    tmp = os.path.join(folder, f"{_tmp_prefix(base)}{unique}.tmp{ext if len(ext) <= 16 else ''}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask applies
        try:
            if os.path.exists(target):
                os.fchmod(fd, stat.S_IMODE(os.stat(target).st_mode))    # keep a replaced file's mode
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, f"{name}: cannot write {path!r} ({exc.strerror})") from None
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError) and path not in str(exc):
            raise OSError(exc.errno or errno.EIO,
                          f"{name}: cannot write {path!r} ({exc.strerror or exc})") from None
        raise


def _save_npz(path, arrays, name):
    with atomic_output(path, name) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _open_regular(path, name):
    """Open ``path`` for reading if it is a regular file of a sane size (never blocks on a FIFO)."""
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{name}: no such file {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{name}: {path!r} is a folder, expected an .npz file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ValueError(f"{name}: cannot open {path!r} ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError(f"{name}: {path!r} is not a regular file (a FIFO, device or socket is never read)")
    if st.st_size > MAX_FILE_BYTES:
        os.close(fd)
        raise ValueError(f"{name}: {path!r} is implausibly large ({st.st_size} bytes)")
    return os.fdopen(fd, "rb")


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
        except (ValueError, TypeError, SyntaxError, OverflowError, MemoryError, RecursionError) as exc:
            raise ValueError(f"{path}: member {info.filename!r} is not a valid .npy array ({exc})") from None
        label = info.filename[:-4]
        if dtype.hasobject or dtype.newbyteorder("=") != np.dtype(want).newbyteorder("="):
            raise ValueError(f"{path}: array {label!r} has dtype {dtype}, expected {np.dtype(want)}")
        if not all(isinstance(n, int) and 0 <= n <= MAX_MEMBER_ENTRIES for n in shape):
            raise ValueError(f"{path}: array {label!r} declares an invalid or too large shape {shape}")
        count = 1
        for n in shape:                         # Python ints: no int64 overflow
            count *= n
        if count > MAX_MEMBER_ENTRIES:
            raise ValueError(f"{path}: array {label!r} declares shape {shape}, too large")
        nbytes = count * dtype.itemsize
        data = fp.read(nbytes + 1)
    if len(data) != nbytes:
        raise ValueError(f"{path}: array {label!r} should hold {nbytes} bytes for shape {shape}, "
                         f"holds {len(data)} (truncated or padded file)")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.astype(np.dtype(want))     # native byte order, writable, C-contiguous copy


def _check_zip_directory(f, path, expected):
    """Refuse an archive whose central directory (read from its end record, before zipfile builds
    it) lists more entries than ``expected`` could need or is implausibly large."""
    size = f.seek(0, os.SEEK_END)
    tail_start = max(0, size - 65_557)                  # the end record: 22 bytes + a comment < 64 KiB
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise ValueError(f"{path}: not an .npz archive (no zip end record)")
    entries = int.from_bytes(tail[at + 10:at + 12], "little")
    directory = int.from_bytes(tail[at + 12:at + 16], "little")
    if entries > 4 * len(expected) or directory > 1 << 20:
        raise ValueError(f"{path}: the archive lists {entries} entries in a {directory}-byte directory; "
                         f"expected the {len(expected)} arrays {list(expected)}")
    f.seek(0)


def _read_npz(path, expected, name="path", optional=None):
    """Read exactly the arrays of ``expected`` (name -> dtype) from the .npz at ``path``, and
    those of ``optional`` it holds (each group of ``optional`` all or none: a tuple of dicts).
    A file that cannot be read as it claims (a /proc file, an I/O error) is a ValueError naming it."""
    try:
        return _read_npz_unchecked(path, expected, name, optional)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{name}: cannot read {path!r} ({exc.strerror or exc})") from None


def _read_npz_unchecked(path, expected, name, optional):
    optional = optional or ()
    allowed = dict(expected)
    for group in optional:
        allowed.update(group)
    with _open_regular(path, name) as f:
        _check_zip_directory(f, path, allowed)
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise ValueError(f"{path}: not an .npz archive (a zip of .npy arrays): {exc}") from None
        with zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if len(names) > 4 * len(allowed) or len(set(names)) != len(names) \
                    or not all(n.endswith(".npy") for n in names):
                raise ValueError(f"{path}: expected only .npy members, each once; found {names[:20]}")
            found = {n[:-4] for n in names}
            want = set(expected).union(*(set(g) for g in optional if found & set(g)))
            if found != want:
                missing = sorted(want - found)
                extra = sorted(found - want)
                raise ValueError(f"{path}: expected exactly the arrays {sorted(want)}"
                                 + (f"; missing {missing}" if missing else "")
                                 + (f"; unexpected {extra}" if extra else ""))
            out = {}
            for info in infos:
                if info.file_size > MAX_MEMBER_ENTRIES * 8 + 4096:
                    raise ValueError(f"{path}: member {info.filename!r} is implausibly large ({info.file_size} bytes)")
                try:
                    out[info.filename[:-4]] = _read_member(zf, info, path, allowed[info.filename[:-4]])
                except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError,
                        RuntimeError) as exc:
                    raise ValueError(f"{path}: member {info.filename!r} cannot be read: {exc}") from None
    return out


def save(path, params):
    """Write ``params`` to ``path`` (exactly that name) as an .npz holding u, w and b (and the
    learnable base's mu, log_sigma and lower, when the flow has one).

    Refuses parameters that ``load`` would refuse (wrong keys or shapes, NaN/inf, outside the
    domain) and paths it should not write (see ``check_output_path``), before writing anything.
    The write is atomic.
    """
    path = check_output_path(path)
    params, _, _ = check_params(params)
    _save_npz(path, {k: np.ascontiguousarray(params[k], dtype=np.float64) for k in param_keys(params)}, "path")


def load(path):
    """Read a flow written by ``save``: a dict of float64 arrays u (K, d), w (K, d), b (K,) — and
    mu (d,), log_sigma (d,), lower (d, d) for a flow with a learnable base.

    Raises FileNotFoundError for a missing file and ValueError, naming the path and the problem,
    for anything else: not a regular file, not a zip, truncated, other or missing arrays, wrong
    dtypes or shapes, NaN/inf, parameters outside the domain. Never unpickles.
    """
    path = check_path(path)
    arrays = _read_npz(path, dict.fromkeys(PARAM_KEYS, np.float64), optional=(dict.fromkeys(BASE_KEYS, np.float64),))
    params, _, _ = check_params(arrays, name=path)
    return params


# --- checkpoints: parameters, optimizer state, history, the random generator, the settings ----

CHECKPOINT_ARRAYS = dict.fromkeys(
    ("u", "w", "b", "adam_m_u", "adam_m_w", "adam_m_b", "adam_v_u", "adam_v_w", "adam_v_b",
     "loss", "beta", "lr"), np.float64)
CHECKPOINT_ARRAYS["meta"] = np.uint8        # UTF-8 JSON: step, settings, Adam's t, the rng state
CHECKPOINT_BASE = dict.fromkeys([k for key in BASE_KEYS for k in (key, "adam_m_" + key, "adam_v_" + key)],
                                np.float64)
CHECKPOINT_FRAME = dict.fromkeys(("frame_c", "frame_S"), np.float64)   # the Laplace frame x = x* + R·y
CHECKPOINT_BEST = dict.fromkeys(["best_" + k for k in PARAM_KEYS], np.float64)      # the keeper's best
CHECKPOINT_BEST_BASE = dict.fromkeys(["best_" + k for k in BASE_KEYS], np.float64)


def _json_ready(x):
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return {"__ndarray__": x.tolist(), "dtype": str(x.dtype)}
    if isinstance(x, np.integer):
        return int(x)
    return x


def _from_json(x, depth=0):
    """Undo _json_ready for a generator state, accepting only what such a state holds."""
    if depth > 4:
        raise ValueError("the generator state is nested too deeply")
    if isinstance(x, dict):
        if "__ndarray__" in x:
            values, dtype = x.get("__ndarray__"), x.get("dtype")
            if dtype not in STATE_DTYPES or not isinstance(values, list) or len(values) > 10_000 \
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ValueError("the generator state holds an invalid array")
            return np.array(values, dtype=dtype)
        return {str(k): _from_json(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (int, str, float)) or x is None:
        return x
    raise ValueError(f"the generator state holds an unexpected {type(x).__name__}")


def save_checkpoint(path, params, adam_m, adam_v, adam_t, history, rng, meta, frame=None, best=None):
    """Atomically write a training checkpoint (see ``fit(checkpoint=...)``): the parameters,
    Adam's moments (dicts shaped like params) and step count, the history, the generator, the
    frame (x*, R) the flow is trained in, if any, and the best parameters seen, if any."""
    meta = dict(meta, adam_t=adam_t, rng_state=_json_ready(rng.bit_generator.state))
    text = json.dumps(meta).encode("utf-8")
    arrays = {}
    for k in param_keys(params):
        arrays[k] = params[k]
        arrays["adam_m_" + k] = adam_m[k]
        arrays["adam_v_" + k] = adam_v[k]
    for k in ("loss", "beta", "lr"):
        arrays[k] = np.asarray(history[k], dtype=np.float64)
    arrays["meta"] = np.frombuffer(text, dtype=np.uint8)
    if frame is not None:
        arrays["frame_c"], arrays["frame_S"] = frame
    for k, v in (best or {}).items():
        arrays["best_" + k] = v
    _save_npz(path, arrays, "checkpoint")


def load_checkpoint(path):
    """Read a checkpoint written by ``save_checkpoint``: (params, adam_m, adam_v, history, meta,
    frame (x*, R) or None, best parameters or None). Every array is checked against the others and
    the metadata's sizes."""
    path = check_path(path, "resume")
    arrays = _read_npz(path, CHECKPOINT_ARRAYS, "resume",
                       optional=(CHECKPOINT_BASE, CHECKPOINT_FRAME, CHECKPOINT_BEST, CHECKPOINT_BEST_BASE))
    try:
        if arrays["meta"].ndim != 1 or arrays["meta"].size > MAX_META_BYTES:
            raise ValueError("not a byte string of a sane length")
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        meta["rng_state"] = _from_json(meta.get("rng_state"))
    except (ValueError, KeyError, UnicodeDecodeError, TypeError, RecursionError) as exc:
        raise ValueError(f"{path}: the checkpoint's metadata is unreadable ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None
    keys = PARAM_KEYS + (BASE_KEYS if "mu" in arrays else ())
    params, K, d = check_params({k: arrays[k] for k in keys}, name=path)
    m = {k: arrays["adam_m_" + k] for k in keys}
    v = {k: arrays["adam_v_" + k] for k in keys}
    for k in keys:
        if m[k].shape != params[k].shape or v[k].shape != params[k].shape:
            raise ValueError(f"{path}: optimizer state for {k!r} does not match the parameters' shape")
        if not (np.all(np.isfinite(m[k])) and np.all(np.isfinite(v[k])) and np.all(v[k] >= 0)):
            raise ValueError(f"{path}: optimizer state for {k!r} holds NaN/inf or negative moments")
    history = {k: list(arrays[k]) for k in ("loss", "beta", "lr")}
    if not (len(history["loss"]) == len(history["beta"]) == len(history["lr"])):
        raise ValueError(f"{path}: the checkpoint's history arrays differ in length")
    if not all(np.all(np.isfinite(history[k])) for k in ("beta", "lr")):
        raise ValueError(f"{path}: the checkpoint's history holds NaN or infinite β or learning rates")
    frame = None
    if "frame_c" in arrays:
        c, S = arrays["frame_c"], arrays["frame_S"]
        if c.shape != (d,) or S.shape != (d, d) or not (np.all(np.isfinite(c)) and np.all(np.isfinite(S))) \
                or np.any(np.triu(S, 1)) or not np.all(np.diag(S) > 0):
            raise ValueError(f"{path}: the checkpoint's frame is not a finite ({d},) vector and a "
                             f"lower-triangular ({d}, {d}) matrix with a positive diagonal")
        if "mu" not in params:
            raise ValueError(f"{path}: the checkpoint holds a frame but no learnable base (mu, log_sigma, "
                             f"lower): a run trained in a frame always has one; the file is incomplete")
        frame = (c, S)
    best = None
    if "best_u" in arrays:
        best = {k: arrays["best_" + k] for k in keys if "best_" + k in arrays}
        if set(best) != set(keys):
            raise ValueError(f"{path}: the checkpoint's best parameters lack {sorted(set(keys) - set(best))}")
        best, _, _ = check_params(best, name=f"{path} (its best parameters)")
        if any(best[k].shape != params[k].shape for k in keys):
            raise ValueError(f"{path}: the checkpoint's best parameters differ in shape from its parameters")
    return params, m, v, history, meta, frame, best
