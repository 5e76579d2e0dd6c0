"""A client with nothing but TensorFlow: load an exported SavedModel, call one signature.

Run as a fresh process by the parity tests, the way a user's service would run it:
``python serving_client.py REQUEST.json OUT.npz``. The request names the SavedModel folder, the
signature, and its inputs (``{"files": [...]}`` sends each file's raw bytes, ``{"strings": [...]}``
UTF-8 strings, ``{"npy": PATH}`` an array). ``"imports"`` lists extra modules to import first
(``tensorflow_text`` registers the tokenizer's ops). Every output lands in OUT.npz (string
outputs base64-encoded under ``NAME.b64``, so PNG bytes survive), and the names of the modules
the process had loaded go under ``__modules__``.
"""

import base64
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf


def _tensor(spec):
    if "files" in spec:
        return tf.constant([Path(p).read_bytes() for p in spec["files"]])
    if "strings" in spec:
        return tf.constant(spec["strings"])
    return tf.constant(np.load(spec["npy"]))


def main(request_file, out_file):
    request = json.loads(Path(request_file).read_text())
    for name in request.get("imports", []):
        importlib.import_module(name)
    served = tf.saved_model.load(request["saved_model"])
    outputs = served.signatures[request["signature"]](
        **{name: _tensor(spec) for name, spec in request["inputs"].items()})
    arrays = {}
    for name, value in outputs.items():
        value = value.numpy()
        if value.dtype == object:
            arrays[f"{name}.b64"] = np.array([base64.b64encode(v).decode("ascii") for v in value.ravel()])
        else:
            arrays[name] = value
    arrays["__modules__"] = np.array(sorted(sys.modules))
    np.savez(out_file, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:3])
