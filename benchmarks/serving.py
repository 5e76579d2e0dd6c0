"""Size and latency of each export format, per task, for the runs you name.

For every run: export a SavedModel and TFLite files (float32, float16, dynamic-range) into a
scratch folder, then time the Keras model, the SavedModel's raw-input signature (file bytes,
strings or a volume, decoded in the graph) and LiteRT on the same test inputs, at batch 1 and
batch 64 (median of repeated calls after a warm-up). Prints Markdown tables for
benchmarks/RESULTS.md. Run by hand, on finished runs (the tasks' defaults are what RESULTS.md
reports):

    python benchmarks/serving.py saved_models/image-classification/<run> [RUN ...]
"""

import io
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

from pipelines import serving, workflow  # noqa: E402

QUANTIZE = ("none", "float16", "dynamic")


def call_ms(call, repeats):
    """Milliseconds of each of ``repeats`` calls, after one warm-up call (tracing, allocation)."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return times


def median_ms(call, repeats):
    return statistics.median(call_ms(call, repeats))


def folder_size(path):
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def png_bytes(images):
    from PIL import Image

    out = []
    for image in images:
        array = np.round(np.clip(image[..., 0] if image.shape[-1] == 1 else image, 0, 1) * 255)
        buffer = io.BytesIO()
        Image.fromarray(array.astype(np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def litert(model_file):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(model_file))


# -- one workload per task: (raw inputs for the SavedModel, keras call, tflite call) ----------
def workload(task, model, info, test, batch):
    import tensorflow as tf

    name = task.name
    if name in ("image-classification", "text-classification"):
        raw = (png_bytes(task.encode(test, info)[0][:batch]) if name == "image-classification"
               else list(test.x[:batch]))
        x = task.encode(test, info)[0][:batch]
        key = "image_bytes" if name == "image-classification" else "text"
        return ({key: tf.constant(raw)}, lambda: model.predict_on_batch(x),
                (lambda runner: runner(pixels=x)) if name == "image-classification" else None)
    if name == "steering":
        x = np.asarray(task.encode(test, info)[0][:batch], np.float32)
        raw = [Path(p).read_bytes() for p in test.x["frames"].paths[:batch]]
        return ({"image_bytes": tf.constant(raw)}, lambda: model.predict_on_batch(x),
                lambda runner: runner(pixels=x))
    if name == "captioning":
        from tasks.captioning.decoding import CaptionWriter

        images = task._images(test.x[:batch], info)
        writer = CaptionWriter(model, info.vocabulary, max_length=info.max_length)

        def tflite_greedy(interpreter):
            from tasks.captioning import vocabulary as vocab

            encode = interpreter.get_signature_runner("encode_pixels")
            step = interpreter.get_signature_runner("decode_step")
            encoded = encode(pixels=images)
            tokens = np.full(len(images), vocab.START_ID, np.int32)
            state = {k: v for k, v in encoded.items() if k.startswith("state")}
            for _ in range(info.max_length):
                out = step(features=encoded["features"], keys=encoded["keys"], tokens=tokens, **state)
                tokens = out["log_probs"].argmax(-1).astype(np.int32)
                state = {k: out[k] for k in state}
                if (tokens == vocab.END_ID).all():
                    break

        return ({"image_bytes": tf.constant(png_bytes(images))}, lambda: writer.greedy(images),
                lambda interpreter: tflite_greedy(interpreter))
    if name == "object-detection":
        from tasks.object_detection.task import _detector

        x = np.asarray(task.frames(test, info)[np.arange(min(batch, len(test)))], np.float32)
        raw = [Path(p).read_bytes() for p in test.x["images"][:batch]]
        detect = _detector(model, info, 0.05, 0.5, 100)  # the network, decoding and NMS, as predict
        return ({"image_bytes": tf.constant(raw)}, lambda: detect(x), lambda runner: runner(pixels=x))
    # medical segmentation: one case per request (a volume or an image)
    case = test.x[0]
    if info.volumes:
        raw = {"volume": tf.constant(np.asarray(case.image, np.float32)),
               "spacing": tf.constant(np.asarray(case.spacing or (1, 1, 1), np.float32))}
    else:
        raw = {"image_bytes": tf.constant(png_bytes([case.image]))}
    slices = task.resize_images(task.case_slices(case, info)[0], info)
    return (raw, lambda: task.predict_case(model, case, info),
            lambda runner: runner(pixels=slices.astype(np.float32)))


def measure(run_dir, scratch, timing=median_ms):
    """Rows (task, format, batch, size in bytes, ``timing(call, repeats)``) for one run."""
    import tensorflow as tf

    path, saved, task, config, info, model = workflow.load_run(run_dir)
    dataset, splits = workflow.run_data(path, task, config)
    test = task.align(dataset.subset(splits.test), info)
    rows = []
    batches = {"medical-segmentation": (1,), "object-detection": (1, 8)}.get(task.name, (1, 64))
    exports = {}
    sm = serving.write(serving.plan(path, "saved_model", Path(scratch) / task.name / "sm"),
                       run_dir=path, task=task, model=model, info=info, saved=saved)
    exports["SavedModel"] = sm
    for quantize in QUANTIZE:
        try:
            exports[f"TFLite {quantize}"] = serving.write(
                serving.plan(path, "tflite", Path(scratch) / task.name / f"tfl_{quantize}", quantize=quantize),
                run_dir=path, task=task, model=model, info=info, saved=saved) / serving.TFLITE_FILE
        except Exception as error:  # text: no TFLite (tensorflow-text ops)
            print(f"{task.name}: no TFLite {quantize}: {error}", file=sys.stderr)
            break
    served = tf.saved_model.load(str(sm)).signatures["serving_default"]
    for batch in batches:
        raw, keras_call, tflite_call = workload(task, model, info, test, batch)
        repeats = 20 if batch == 1 else 5  # detection's Keras row: network + decoding + NMS
        rows.append((task.name, "Keras (model.keras)", batch, folder_size(path / "model.keras"),
                     timing(keras_call, repeats)))
        rows.append((task.name, "SavedModel, raw input", batch, folder_size(sm),
                     timing(lambda: served(**raw), repeats)))
        for name, model_file in exports.items():
            if name.startswith("TFLite") and tflite_call:
                interpreter = litert(model_file)
                runner = (interpreter if task.name == "captioning"
                          else interpreter.get_signature_runner(next(iter(interpreter.get_signature_list()))))
                rows.append((task.name, name, batch, folder_size(model_file),
                             timing(lambda: tflite_call(runner), repeats)))
    return rows


def main(run_dirs):
    with tempfile.TemporaryDirectory() as scratch:
        rows = [row for run in run_dirs for row in measure(run, scratch)]
    print("| task | format | batch | size (KB) | median ms per call |\n|---|---|---|---|---|")
    for task, fmt, batch, size, ms in rows:
        print(f"| {task} | {fmt} | {batch} | {size / 1024:.0f} | {ms:.2f} |")
    print("\nKeras: model.keras on pixels the project prepared (captioning: CaptionWriter greedy; "
          "segmentation: predict_case on the whole case). SavedModel: the serving_default signature "
          "on raw inputs, decoding included. TFLite: the network on prepared pixels (captioning: "
          "encoder, then the decoder step in a Python greedy loop; segmentation: the case's slices; "
          "detection: the raw heads, decoding and NMS left to the client).")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
