"""Time the training step of one task's default model under one setting, in a process of its own.

Thread counts and oneDNN are fixed when TensorFlow starts, so every setting of the sweep in
``python -m benchmarks run --only training_step_sweep`` runs this script afresh. The models are
the tasks' defaults, built with the project's own builders: digits (basic_cnn with batch norm,
8x8x1), steering (PilotNet, 32x64x3, 1 output) and 2D hippocampus segmentation (basic_cnn
encoder 16-32-64 with batch norm + U-Net decoder, 48x48x1, 3 classes). The data are random:
the arithmetic of a step does not depend on the values.

    [TF_ENABLE_ONEDNN_OPTS=0] python benchmarks/step_timing.py MODEL [--batch N] [--jit]
        [--intra N] [--inter N] [--channels-first] [--repeats N]

Prints one JSON line: seconds per step of each repetition and the forward FLOPs of one example.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {"digits": ((8, 8, 1), 32), "steering": ((32, 64, 3), 32), "segmentation_2d": ((48, 48, 1), 32)}
STEPS = 20  # timed steps per repetition


def build(name, input_shape):
    """(model, loss, random targets maker) of the task's default model."""
    import numpy as np

    from pipelines.backbones import create_backbone

    rng = np.random.default_rng(1)
    if name == "digits":
        from pipelines.heads import build_classifier

        model = build_classifier(create_backbone("basic_cnn", input_shape, batch_norm=True), 10)
        return model, "sparse_categorical_crossentropy", lambda n: rng.integers(0, 10, n).astype("int32")
    if name == "steering":
        from tasks.steering.head import build_regressor

        model = build_regressor(create_backbone("pilotnet", input_shape), pixel_mean=[0.5] * input_shape[-1],
                                pixel_variance=[0.1] * input_shape[-1], target_mean=0.0, target_std=0.06)
        return model, "mse", lambda n: rng.normal(0, 0.06, (n, 1)).astype("float32")
    from tasks.medical_segmentation.unet import DiceCrossEntropy, build_unet

    backbone = create_backbone("basic_cnn", input_shape, batch_norm=True, widths=[16, 32, 64])
    return (build_unet(backbone, 3, decoder_width=16), DiceCrossEntropy(3),
            lambda n: rng.integers(0, 3, (n, *input_shape[:-1])).astype("int32"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--batch", type=int)
    parser.add_argument("--jit", action="store_true", help="XLA-compile the train step")
    parser.add_argument("--intra", type=int, default=0, help="intra-op threads (0: TensorFlow's choice)")
    parser.add_argument("--inter", type=int, default=0, help="inter-op threads (0: TensorFlow's choice)")
    parser.add_argument("--channels-first", action="store_true", help="Keras image_data_format channels_first")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter)
    input_shape, default_batch = MODELS[args.model]
    batch = args.batch or default_batch
    if args.channels_first:
        keras.config.set_image_data_format("channels_first")
        input_shape = (input_shape[-1], *input_shape[:-1])
    keras.utils.set_random_seed(0)
    model, loss, targets = build(args.model, input_shape)
    from suite import forward_flops

    flops = forward_flops(model, input_shape)
    model.compile(keras.optimizers.Adam(1e-3), loss, jit_compile=args.jit)
    x = np.random.default_rng(0).random((batch * STEPS, *input_shape), dtype=np.float32)
    y = targets(len(x))
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # trace, compile, warm up
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        seconds.append((time.perf_counter() - start) / STEPS)
    print(json.dumps({"seconds_per_step": seconds, "forward_flops": flops, "batch": batch}))


if __name__ == "__main__":
    main()
