"""Steering: a camera frame to a steering angle, learned end to end (NVIDIA's PilotNet / DAVE-2,
Bojarski et al. 2016). The first regression task: the network answers in the data's own units and
is scored against the training mean and ridge regression on the pixels, on frames of test
episodes it never saw."""

import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.config import TrainConfig, option
from pipelines.errors import UserError
from pipelines.inputs import tf_dataset
from pipelines.preprocessing import Preprocessing
from pipelines.tasks import Task, register_task
from tasks.steering import figures, readers
from pipelines.frames import Frames, frame_in_graph
from tasks.steering.head import build_regressor
from tasks.steering.metrics import LOWER_IS_BETTER, steering_metrics

PILOTNET_WIDTH = 200  # frames wider than this are scaled down to it, keeping their aspect
STATISTICS_FRAMES = 512  # training frames the pixel statistics are measured on


@dataclass
class SteeringConfig(TrainConfig):
    data: str = option("builtin:driving", help="a folder with the Udacity simulator's driving_log.csv "
                       "and IMG/, a path,steering CSV, or builtin:driving")
    backbone: str = option("pilotnet", help="registered image backbone")
    epochs: int = option(40, minimum=1, help="training epochs")
    batch_size: int = option(32, minimum=1, help="frames per step")
    learning_rate: float = option(1e-3, minimum=0, exclusive_min=True, help="peak learning rate")
    image_height: typing.Optional[int] = option(None, minimum=8, help="network input height "
                                                "(default: the frames' own after cropping, scaled "
                                                "with the width)")
    image_width: typing.Optional[int] = option(None, minimum=8, help="network input width (default: "
                                               "the frames' own, at most 200 as in PilotNet)")
    channels: int = option(3, choices=(1, 3), help="1 (gray) or 3 (colour)")
    crop_top: float = option(0.0, minimum=0, maximum=0.9, help="fraction of rows cut off the top "
                             "(sky) before resizing")
    crop_bottom: float = option(0.0, minimum=0, maximum=0.9, help="fraction of rows cut off the "
                                "bottom (bonnet) before resizing")
    target_column: str = option("steering", help="CSV column holding the steering angle")
    side_cameras: bool = option(False, help="Udacity logs: train on the left/right cameras too")
    side_camera_correction: float = option(0.2, minimum=0, help="steering added to the left "
                                           "camera's frames and taken from the right one's")
    augment: bool = option(True, help="random mirror images, brightness and shifts while training")
    augment_flip: bool = option(True, help="mirror frames left-right, negating the angle")
    augment_brightness: float = option(0.0, minimum=0, maximum=0.9,
                                       help="brightness gain drawn from [1 - b, 1 + b]; 0 = off")
    augment_shift: float = option(0.0, minimum=0, maximum=0.5, help="sideways shift, fraction of "
                                  "the width; 0 = off (needs shift_steering)")
    shift_steering: float = option(0.0, help="steering added per full-width shift to the right")
    loss: str = option("mse", choices=("mse", "huber"), help="mean squared error, or Huber")
    huber_delta: float = option(1.0, minimum=0, exclusive_min=True,
                                help="Huber's delta in units of the training angles' spread")
    head_units: list = option([100, 50, 10], help="fully connected layers (PilotNet: 100, 50, 10)")
    head_pool: str = option("flatten", choices=("flatten", "avg"),
                            help="flatten the deepest level (PilotNet) or average it")
    head_dropout: float = option(0.0, minimum=0, maximum=0.9, help="dropout before each dense layer")
    tolerance: typing.Optional[float] = option(
        None, minimum=0, exclusive_min=True,
        help="an error at most this large counts as within tolerance (default: a tenth of the "
             "training angles' spread, in the data's units)")
    saliency_frames: int = option(6, minimum=0, help="test frames shown with VisualBackProp")


@dataclass
class Predictions:
    """A split's predicted angles, and the tolerance the run scores them with."""

    angles: np.ndarray
    tolerance: float


@dataclass(kw_only=True)
class SteeringPreprocessing(Preprocessing):
    """The frames' geometry as the network takes them, and the training statistics it
    standardises with (pixels per channel, the angle's mean and spread)."""

    height: int
    width: int
    channels: int
    crop_top: float = 0.0
    crop_bottom: float = 0.0
    pixel_mean: list
    pixel_variance: list
    target_mean: float
    target_std: float
    target: str = "steering"


@register_task("steering")
class Steering(Task):
    modality = "image"
    Config = SteeringConfig
    Preprocessing = SteeringPreprocessing
    summary = "a camera frame to a steering angle, end to end (PilotNet)"
    builtin_data = tuple(readers.BUILTIN)
    monitor = ("val_loss", "min")
    key_metrics = ("rmse", "mae", "r2")
    lower_is_better = LOWER_IS_BETTER

    # -- data --------------------------------------------------------------------------------
    def load(self, spec, config):
        return readers.load(spec, target_column=config.target_column, side_cameras=config.side_cameras,
                            side_camera_correction=config.side_camera_correction,
                            test_fraction=config.test_fraction, val_fraction=config.val_fraction)

    def fit_preprocessing(self, train, config, min_size):
        height, width = _input_size(train.x["frames"].paths[0], config, min_size)
        geometry = dict(height=height, width=width, channels=config.channels,
                        crop_top=config.crop_top, crop_bottom=config.crop_bottom)
        frames = Frames(train.x["frames"].paths, **geometry)
        sample = frames[np.unique(np.linspace(0, len(frames) - 1, STATISTICS_FRAMES).astype(int))]
        y = np.asarray(train.y, np.float64)
        spread = float(y.std()) or 1.0
        return SteeringPreprocessing(**geometry, pixel_mean=sample.mean(axis=(0, 1, 2)).tolist(),
                                     pixel_variance=np.maximum(sample.var(axis=(0, 1, 2)), 1e-6).tolist(),
                                     target_mean=float(y.mean()), target_std=spread,
                                     target=config.target_column)

    def scorable(self, dataset):
        """Only real frames are scored: mirror copies and side cameras are training material."""
        return np.flatnonzero(~np.asarray(dataset.x["synthetic"]))

    def input_shape(self, info):
        return (info.height, info.width, info.channels)

    @staticmethod
    def frames(dataset, info):
        """The dataset's frames with the network's geometry (read lazily)."""
        return network_frames(dataset.x["frames"].paths, info)

    def encode(self, dataset, info):
        return self.frames(dataset, info), np.asarray(dataset.y, np.float32)[:, None]

    def augment(self, config, info):
        from tasks.steering.augment import steering_augmentation

        if not config.augment:
            return None
        return steering_augmentation(flip=config.augment_flip, brightness_factor=config.augment_brightness,
                                     shift_factor=config.augment_shift,
                                     steering_per_width=config.shift_steering)

    def class_weight(self, y, config):
        return None

    # -- model -------------------------------------------------------------------------------
    def build(self, backbone, info, config):
        from pipelines.backbones import BACKBONES

        return build_regressor(backbone, pixel_mean=info.pixel_mean, pixel_variance=info.pixel_variance,
                               target_mean=info.target_mean, target_std=info.target_std,
                               units=config.head_units, pool=config.head_pool, dropout=config.head_dropout,
                               standardise_pixels=not BACKBONES.entry(config.backbone).meta.get("normalises_input"))

    def loss(self, config, info):
        import keras

        if config.loss == "huber":
            return keras.losses.Huber(delta=config.huber_delta * info.target_std)
        return keras.losses.MeanSquaredError()

    def compile_metrics(self, config, info):
        import keras

        return [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")]

    # -- evaluation --------------------------------------------------------------------------
    def predict_dataset(self, model, dataset, info, config, progress=None):
        x, y = self.encode(dataset, info)
        stream = tf_dataset(x, y, batch_size=256, training=False, cache="none")
        return Predictions(model.predict(stream, verbose=0).reshape(-1), tolerance(config, info))

    def metrics(self, dataset, outputs, info):
        return steering_metrics(dataset.y, outputs.angles, outputs.tolerance)

    def baseline(self, train, test, info, config, model=None):
        """Ridge regression on the frames at half the network's size (the penalty chosen by
        grouped cross-validation over the training episodes), beside the training mean."""
        from tasks.steering.baselines import mean_predictor, ridge_on_pixels

        ridge, alpha = ridge_on_pixels(self.encode(train, info)[0], train.y, train.x["group"],
                                       self.encode(test, info)[0])
        mean = mean_predictor(train.y, len(test))
        within = tolerance(config, info)
        return {"name": f"ridge_pixels (alpha {alpha:g})",
                "metrics": steering_metrics(test.y, ridge, within),
                "predictions": ridge,
                "mean": {"name": "training_mean", "metrics": steering_metrics(test.y, mean, within)}}

    def tables(self, dataset, outputs, info, baseline=None):
        import pandas as pd

        rows = [{"predictor": "network", **self.metrics(dataset, outputs, info)}]
        if baseline:
            rows += [{"predictor": baseline["name"], **baseline["metrics"]},
                     {"predictor": baseline["mean"]["name"], **baseline["mean"]["metrics"]}]
        table = pd.DataFrame(rows).round(5)
        return {f"The network beside the baselines (test frames; tolerance {outputs.tolerance:.3g})": table}

    def figures(self, model, dataset, outputs, info, config, baseline=None):
        y = np.asarray(dataset.y)
        predictions = {"network": outputs.angles}
        if baseline and "predictions" in baseline:
            predictions["ridge"] = baseline["predictions"]
        frames = self.frames(dataset, info)
        pick = np.unique(np.linspace(0, len(frames) - 1, min(config.saliency_frames, len(frames)))
                         .round().astype(int)) if config.saliency_frames else np.zeros(0, int)
        saliency = figures.saliency_figure(model, frames[pick], y[pick], outputs.angles[pick], len(pick))
        return {
            "scatter": (figures.scatter_figure(y, predictions),
                        "Predicted against true steering on the test frames; on the diagonal is "
                        "perfect."),
            "drive": (figures.drive_figure(dataset.x["order"], dataset.x["group"], y, predictions),
                      "Steering over the test drive in time order: the truth, the network and the "
                      "ridge baseline."),
            "errors": (figures.error_histogram({k: v - y for k, v in predictions.items()},
                                               outputs.tolerance),
                       f"Errors of the network and the ridge baseline; the dashed lines mark the "
                       f"tolerance (+/-{outputs.tolerance:.3g})."),
            "saliency": saliency,
        }

    def report_notes(self, dataset, info):
        notes = super().report_notes(dataset, info)
        notes.append(f"Frames {info.height}x{info.width}x{info.channels} (crop top {info.crop_top:.0%}, "
                     f"bottom {info.crop_bottom:.0%}); steering ({info.target}) mean "
                     f"{info.target_mean:+.4f}, spread {info.target_std:.4f} on the training frames.")
        return notes

    # -- prediction --------------------------------------------------------------------------
    def predict_inputs(self, model, inputs, info, options, out=None):
        from pipelines.image_files import ImageFiles

        ImageFiles.scan(inputs)  # a missing or broken file is named, not a traceback
        frames = network_frames(np.asarray([str(p) for p in inputs]), info)
        angles = model.predict(frames.load(), verbose=0).reshape(-1)
        return [{"input": str(path), info.target: float(angle)} for path, angle in zip(inputs, angles)]

    def format_prediction(self, record):
        (key, value), = [(k, v) for k, v in record.items() if k != "input"]
        return f"{Path(record['input']).name}: {key} {value:+.5f}"

    # -- serving -----------------------------------------------------------------------------
    def serving_signatures(self, model, info):
        import tensorflow as tf

        from pipelines.serving import Signature

        def serving_default(image_bytes):
            pixels = tf.map_fn(lambda data: frame_in_graph(data, info), image_bytes,
                               fn_output_signature=tf.TensorSpec(self.input_shape(info), tf.float32))
            return {info.target: tf.reshape(model(pixels, training=False), [-1])}

        return {
            "serving_default": Signature(
                serving_default, [tf.TensorSpec([None], tf.string, name="image_bytes")],
                f"encoded PNG/JPEG camera frames -> {info.target}; decoded, cropped (top "
                f"{info.crop_top:.0%}, bottom {info.crop_bottom:.0%}) and resized to "
                f"{info.height}x{info.width} in the graph"),
            "predict_pixels": self._pixel_signature(model, info)}

    def tflite_signatures(self, model, info):
        return {"predict_pixels": self._pixel_signature(model, info)}

    def _pixel_signature(self, model, info):
        import tensorflow as tf

        from pipelines.serving import Signature

        def predict_pixels(pixels):
            return {info.target: tf.reshape(model(pixels, training=False), [-1])}

        return Signature(predict_pixels, [tf.TensorSpec((None,) + self.input_shape(info), tf.float32,
                                                        name="pixels")],
                         f"float32 frames already {info.height}x{info.width}x{info.channels} in "
                         f"[0, 1] -> {info.target}")


def network_frames(paths, info):
    """Image files read lazily with the geometry the run's network takes (``info``)."""
    return Frames(np.asarray(paths), info.height, info.width, info.channels, info.crop_top,
                  info.crop_bottom)


def tolerance(config, info):
    """The error that counts as steering about right: as configured, else a tenth of the training
    angles' spread (two significant digits), so the share means something in any units."""
    return config.tolerance or float(f"{0.1 * info.target_std:.2g}")


def _input_size(first_file, config, min_size):
    """(height, width) the network takes: as configured, else the frames' own after cropping,
    scaled down to PilotNet's 200 columns when wider (aspect kept)."""
    from PIL import Image

    with Image.open(first_file) as image:
        width, height = image.size
    height = height - round(height * config.crop_top) - round(height * config.crop_bottom)
    if height < 1:
        raise UserError(f"--set crop_top/crop_bottom: {config.crop_top} + {config.crop_bottom} "
                        f"leaves no rows of the frames")
    scale = min(1.0, PILOTNET_WIDTH / width)
    if config.image_width and config.image_height:
        size = (config.image_height, config.image_width)
    elif config.image_width:
        size = (max(1, round(height * config.image_width / width)), config.image_width)
    elif config.image_height:
        size = (config.image_height, max(1, round(width * config.image_height / height)))
    else:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return max(size[0], min_size), max(size[1], min_size)
