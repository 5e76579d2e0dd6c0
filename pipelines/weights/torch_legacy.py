"""PyTorch's legacy (pre-1.6, not zip) serialization, read without torch and without running code.

Such a file is five pickles and then the raw storages: a magic number, the protocol version, the
writer's system info (byte order, sizes), the object itself (here a state dict, whose tensors are
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` calls on storages named by
persistent ids), the list of storage keys in file order, then for each key an 8-byte element
count and the storage's bytes. Every pickle is read with :class:`RestrictedUnpickler`, which
resolves only the names torch's own ``weights_only=True`` loader allows for a state dict: the
tensor-rebuild functions, the typed storages and ``collections.OrderedDict``. A pickle naming
anything else is refused before it is called, so a tampered file never executes.
"""

import collections
import io
import pickle
import struct

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
PROTOCOL_VERSION = 1001

STORAGE_DTYPES = {  # torch.<Name>Storage -> the dtype of its elements
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafePickle(ValueError):
    """A pickle that names something other than the tensor-rebuild names."""


class _Storage:
    """A storage named in the object pickle; its bytes come after the pickles."""

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, np.dtype(dtype), int(numel)
        self.array = None


class _TensorView:
    """A tensor rebuilt from a storage, materialised once the storages have been read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def materialise(self):
        flat = self.storage.array
        if flat is None:
            raise ValueError(f"storage {self.storage.key} was never read")
        item = flat.itemsize
        needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride)) if all(self.size) else 0
        if needed > len(flat):
            raise ValueError(f"a tensor of {self.size} reaches past its storage's {len(flat)} elements")
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=[s * item for s in self.stride])
        return np.array(view)  # a copy: no view into the file's buffer outlives the read


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, _Storage):
        raise UnsafePickle("a tensor rebuilt from something other than a storage")
    return _TensorView(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _ordered_dict(*args, **kwargs):
    return collections.OrderedDict(*args, **kwargs)


ALLOWED = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): name for name in STORAGE_DTYPES},  # storage types, only as persistent-id tags
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`ALLOWED`; storages come through persistent ids and are recorded."""

    def __init__(self, handle):
        super().__init__(handle)
        self.storages = {}

    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickle(f"the pickle names {module}.{name}, which a weights file has no "
                               f"reason to hold; refused, not executed") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickle(f"unexpected persistent id {pid!r:.80}")
        _, kind, key, _location, numel = pid[:5]
        if kind not in STORAGE_DTYPES:
            raise UnsafePickle(f"unknown storage type {kind!r:.40}")
        if len(pid) > 5 and pid[5] is not None:
            raise UnsafePickle("storage views are not supported")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, STORAGE_DTYPES[kind], numel)
        return self.storages[key]


def read_state_dict(path):
    """{name: numpy array} of a legacy-format PyTorch state dict. ValueError (an
    :class:`UnsafePickle` for a refused name) for anything that is not one."""
    with open(path, "rb") as handle:
        data = handle.read()
    stream = io.BytesIO(data)
    if data[:2] == b"PK":
        raise ValueError("a zip-format PyTorch file (torch >= 1.6); only the legacy format is read")

    def load():
        unpickler = RestrictedUnpickler(stream)
        unpickler.storages = storages
        try:
            return unpickler.load()
        except UnsafePickle:
            raise
        except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError, KeyError) as error:
            raise ValueError(f"not a PyTorch legacy file ({type(error).__name__}: {error})") from None

    storages = {}
    if load() != MAGIC_NUMBER:
        raise ValueError("not a PyTorch file (wrong magic number)")
    if load() != PROTOCOL_VERSION:
        raise ValueError("unsupported PyTorch serialization protocol")
    system = load()
    if not isinstance(system, dict) or not system.get("little_endian", False):
        raise ValueError("only little-endian files are read")
    state = load()
    keys = load()
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise ValueError("the file does not hold a state dict")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise ValueError(f"storage {key} is listed but never used")
        header = stream.read(8)
        if len(header) != 8:
            raise ValueError("the file ends inside its storages")
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * storage.dtype.itemsize
        raw = stream.read(nbytes)
        if numel != storage.numel or len(raw) != nbytes:
            raise ValueError(f"storage {key}: {len(raw)} bytes, expected {storage.numel} elements")
        storage.array = np.frombuffer(raw, dtype=storage.dtype)
    tensors = {}
    for name, value in state.items():
        if not isinstance(value, _TensorView):
            raise ValueError(f"{name!r} is not a tensor")
        tensors[str(name)] = value.materialise()
    return tensors
