"""Exports that serve as they are: TF Serving's ``OUT/<version>/`` layout, TFLite, metadata.json.

A task says what its endpoints are (:meth:`pipelines.tasks.Task.serving_signatures`: raw bytes,
strings or volumes in, class names, captions or masks out; and
:meth:`~pipelines.tasks.Task.tflite_signatures`: the numeric part TFLite's ops can run). This
module writes them once for every task: a SavedModel built with ``keras.export.ExportArchive``,
or a ``.tflite`` flat buffer converted from those endpoints, optionally quantised. A version is
written into a hidden staging folder and renamed into place, so a failed export leaves nothing
half-written and an existing version is never replaced.
"""

import datetime
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import runs
from pipelines.errors import UserError

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "float16", "dynamic")
METADATA_FILE = "metadata.json"
EXTRA = "assets.extra"  # TF Serving's place for files beside a SavedModel; kept in each version
TFLITE_FILE = "model.tflite"


@dataclass
class Signature:
    """One endpoint: a function of named tensors, the specs of its inputs, what it does."""

    function: object
    inputs: list  # tf.TensorSpec per positional argument, named as the function's arguments
    description: str = ""
    notes: list = field(default_factory=list)


@dataclass
class Plan:
    """Where an export goes, settled (and refused if it must be) before any model is loaded."""

    fmt: str
    quantize: str
    version: int
    out: Path

    @property
    def target(self):
        return self.out / str(self.version)


def plan(run_dir, fmt, out=None, *, version=1, quantize="none"):
    """Check the request: format, quantisation, version; ``OUT/<version>`` must not exist."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZATIONS)}")
    if fmt == "saved_model" and quantize != "none":
        raise UserError(f"--quantize {quantize}: quantisation applies to --format tflite only")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserError(f"--version {version}: must be a whole number of at least 1")
    out = Path(out) if out else Path(run_dir) / "export" / fmt
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if (out / str(version)).exists():
        taken = sorted(int(p.name) for p in out.iterdir() if p.name.isdigit())
        raise UserError(f"--out {out}: version {version} already exists (nothing is overwritten); "
                        f"pass --version {taken[-1] + 1}")
    return Plan(fmt, quantize, version, out)


def write(request, *, run_dir, task, model, info, saved):
    """Write ``OUT/<version>/`` (a SavedModel or ``model.tflite``) and ``OUT/metadata.json``.

    The task's endpoints are built (and refused, if the task cannot serve this format) before
    anything is written; the version folder appears whole or not at all."""
    from pipelines.tflite_ops import for_tflite

    run_dir, out = Path(run_dir), request.out
    signatures = (task.serving_signatures(model, info) if request.fmt == "saved_model"
                  else task.tflite_signatures(for_tflite(model), info))
    created_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{request.version}.partial-"))
    try:
        if request.fmt == "saved_model":
            described = _write_saved_model(model, signatures, staging)
        else:
            described = _write_tflite(model, signatures, staging / TFLITE_FILE, request.quantize)
        metadata = _metadata(run_dir, task, info, saved, request, described)
        info.save_assets(staging / EXTRA, runs.write_json)  # class names, vocabulary
        runs.write_json(staging / EXTRA / METADATA_FILE, metadata)
        _open_up(staging)
        staging.rename(request.target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_out and not any(out.iterdir()):
            out.rmdir()
        raise
    runs.write_json(out / METADATA_FILE, metadata)
    return request.target


def _open_up(folder):
    """mkdtemp makes a 0700 folder; give the version folder the umask's usual mode."""
    import os

    os.chmod(folder, 0o777 & ~runs.current_umask())


def _write_saved_model(model, signatures, folder):
    """Write the endpoints with ``keras.export.ExportArchive``; return them as metadata.json
    describes them (from the functions the archive traced, not traced again)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    described = {}
    for name, signature in signatures.items():
        traced = archive.add_endpoint(name, signature.function, input_signature=list(signature.inputs))
        outputs = traced.get_concrete_function(*signature.inputs).structured_outputs
        described[name] = {"description": signature.description,
                           "inputs": {spec.name: _spec(spec) for spec in signature.inputs},
                           "outputs": {key: _spec(value) for key, value in outputs.items()}}
        if signature.notes:
            described[name]["notes"] = list(signature.notes)
    archive.write_out(str(folder), verbose=False)
    return described


def _write_tflite(model, signatures, path, quantize):
    """Convert the task's numeric endpoints (one signature runner each) into one flat buffer."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as scratch:
        described = _write_saved_model(model, signatures, scratch)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=list(signatures))
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        try:
            flatbuffer = converter.convert()
        except Exception as error:  # the converter raises ConverterError and others
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"cannot convert to TFLite: {first}") from None
    runs.write_bytes(path, flatbuffer)
    return described


def _spec(tensor):
    return {"dtype": tensor.dtype.name, "shape": [None if d is None else int(d) for d in tensor.shape]}


def _metadata(run_dir, task, info, saved, request, described):
    """What a client needs beside the model, in the spirit of a MONAI bundle's metadata."""
    from pipelines import __version__

    metrics = runs.read_optional_json(run_dir / runs.METRICS_FILE)
    document = {
        "format": request.fmt, "version": request.version, "task": task.name, "run_dir": str(run_dir),
        "run_id": run_dir.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "exported_by": f"cnn-tasks {__version__}",
        "signatures": described,
        "default_signature": next(iter(described)) if request.fmt == "saved_model" else None,
        "class_names": getattr(info, "class_names", None),
        "preprocessing": info.to_json(),
        "metrics": metrics.get("metrics"), "baseline": (metrics.get("baseline") or {}).get("metrics"),
        "data": saved.get("config", {}).get("data"), "backbone": saved.get("backbone"),
        "lineage": saved.get("lineage"), "versions": saved.get("versions"),
    }
    if request.fmt == "tflite":
        document["quantize"] = request.quantize
    return document
