"""Image classification: images to classes (digits, photos, medical scans)."""

import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import augmentation, imaging
from pipelines.classification_task import ClassificationConfig, ClassificationTask, ClassPreprocessing
from pipelines.config import option
from pipelines.image_files import baseline_sample, is_image_files
from pipelines.inputs import tf_dataset
from pipelines.tasks import register_task
from tasks.image_classification import figures, readers
from pipelines.heads import build_classifier


@dataclass
class ImageClassificationConfig(ClassificationConfig):
    data: str = option("builtin:digits", help="class folders, a path,label CSV, an .npz, or builtin:digits")
    epochs: int = option(40, minimum=1, help="training epochs")
    learning_rate: float = option(5e-4, minimum=0, exclusive_min=True, help="peak learning rate")
    backbone_options: dict = option({"batch_norm": True},
                                    help="backbone builder arguments (defaults apply to basic_cnn only)")
    image_size: typing.Optional[int] = option(None, minimum=1,
                                              help="square input size (default: the data's own)")
    channels: typing.Optional[int] = option(None, choices=(None, 1, 3),
                                            help="1 or 3 (default: the data's own)")
    augment: bool = option(True, help="random shifts (and flips if augment_flip) while training")
    augment_shift: float = option(0.1, minimum=0, maximum=0.5, help="max shift, fraction of size")
    augment_flip: typing.Optional[bool] = option(
        None, choices=(None, True, False),
        help="random horizontal flips; default: on unless the data says a mirror image changes "
             "the class (builtin:digits)")
    head_pool: str = option("avg", choices=("avg", "max"), help="global pooling of the deepest level")
    head_hidden: int = option(0, minimum=0, help="units of a hidden fully connected layer; 0 = none")
    head_dropout: float = option(0.3, minimum=0, maximum=0.9, help="dropout before the classifier")
    path_column: str = option("path", help="CSV column holding image paths")
    label_column: str = option("label", help="CSV column holding class labels")


@dataclass(kw_only=True)
class ImagePreprocessing(ClassPreprocessing):
    image_size: int  # square side the network takes
    channels: int
    input_scale: float = 255.0  # what the data's pixel values were divided by
    augment_flip: bool = True  # whether a mirror image keeps its class (decided from the data)


@register_task("image-classification")
class ImageClassification(ClassificationTask):
    modality = "image"
    Config = ImageClassificationConfig
    Preprocessing = ImagePreprocessing
    summary = "images to classes (digits, photos, medical scans)"
    builtin_data = ("digits",)

    def load(self, spec, config):
        return readers.load(spec, image_size=config.image_size, channels=config.channels,
                            path_column=config.path_column, label_column=config.label_column)

    def fit_preprocessing(self, train, config, min_size):
        native = int(max(train.x.shape[1:3]))
        size = max(config.image_size or native, min_size)
        channels = config.channels or int(train.x.shape[-1])
        flip = config.augment_flip
        if flip is None:
            flip = not train.info.get("mirror_changes_class", False)
        return ImagePreprocessing(class_names=list(train.info["class_names"]), image_size=size,
                                  channels=channels, input_scale=train.info.get("input_scale", 255.0),
                                  augment_flip=bool(flip))

    def input_shape(self, info):
        return (info.image_size, info.image_size, info.channels)

    def preprocess(self, images, info):
        """Images as the network takes them: arrays converted now, files read lazily (decoded
        by tf.data when training, row by row when indexed)."""
        if is_image_files(images):
            return images.at(info.channels, info.image_size)
        return imaging.resize_batch(imaging.fit_channels(images, info.channels), info.image_size)

    def encode(self, dataset, info):
        return self.preprocess(dataset.x, info), np.asarray(dataset.y, dtype=np.int32)

    def augment(self, config, info):
        if not config.augment:
            return None
        shift, flips = config.augment_shift, info.augment_flip

        def apply(x, y, seed):
            shift_seed, flip_seed = augmentation.split(seed, 2)
            x = augmentation.translate(x, shift_seed, shift)
            if flips:
                x = augmentation.flip(x, flip_seed, "horizontal")
            return x, y

        return apply

    def build(self, backbone, info, config):
        return build_classifier(backbone, len(info.class_names), pool=config.head_pool,
                                norm=self.head_norm(config), hidden=config.head_hidden,
                                dropout=config.head_dropout)

    def predict_dataset(self, model, dataset, info, config, progress=None):
        x, y = self.encode(dataset, info)
        if is_image_files(x):  # streamed through tf.data, never all in memory
            x = tf_dataset(x, y, batch_size=256, training=False, cache="none")
        return model.predict(x, batch_size=256, verbose=0)

    def baseline(self, train, test, info, config, model=None):
        """Logistic regression on the resized pixels (standardised), same split, same metrics."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        x_train, y_train = self.encode(train, info)
        x_test, y_test = self.encode(test, info)
        name = "logistic_regression_pixels"
        if is_image_files(x_train):  # scikit-learn needs the pixels in memory: a sample if large
            keep = baseline_sample(y_train, x_train.nbytes, seed=config.seed)
            if len(keep) < len(y_train):
                name = f"{name} (fitted on {len(keep):,} of {len(y_train):,} training images)"
            x_train, y_train = x_train[keep], y_train[keep]
        pixels = FunctionTransformer(lambda images: np.asarray(images).reshape(len(images), -1))
        return self.probability_baseline(
            name, make_pipeline(pixels, StandardScaler(), LogisticRegression(max_iter=2000)),
            x_train, y_train, x_test, y_test, info)

    def figures(self, model, dataset, outputs, info, config, baseline=None):
        names = info.class_names
        images, _ = self.encode(dataset, info)
        y = np.asarray(dataset.y)
        result = self.classification_figures(y, outputs, info, baseline)
        result["mistakes"] = figures.mistakes_figure(images, y, outputs, names)
        result["gradcam"] = figures.gradcam_figure(model, images, y, outputs, names)
        return result

    def read_inputs(self, paths, info):
        """Image files as the network takes them: (N, size, size, channels) in [0, 1]."""
        return np.stack([imaging.resize_batch(imaging.fit_channels(
            imaging.read_image(p)[None], info.channels), info.image_size)[0] for p in paths])

    def predict_inputs(self, model, inputs, info, options, out=None):
        records = self.top_classes(model.predict(self.read_inputs(inputs, info), verbose=0), info, options)
        return [{"input": str(path), **record} for path, record in zip(inputs, records)]

    # -- serving -----------------------------------------------------------------------------
    def serving_signatures(self, model, info):
        import tensorflow as tf

        from pipelines.serving import Signature

        size, channels = info.image_size, info.channels

        def serving_default(image_bytes):
            pixels = imaging.decode_batch_in_graph(image_bytes, channels, size)
            return self.class_outputs(model(pixels, training=False), info)

        def predict_pixels(pixels):
            return self.class_outputs(model(pixels, training=False), info)

        return {
            "serving_default": Signature(
                serving_default, [tf.TensorSpec([None], tf.string, name="image_bytes")],
                f"encoded PNG/JPEG/BMP/GIF files -> class; decoded, fitted to {channels} "
                f"channel(s), resized to {size}x{size} and scaled to [0, 1] in the graph"),
            "predict_pixels": self._pixel_signature(predict_pixels, info)}

    def tflite_signatures(self, model, info):
        def predict_pixels(pixels):
            return self.class_outputs(model(pixels, training=False), info, names=False)

        return {"predict_pixels": self._pixel_signature(predict_pixels, info)}

    @staticmethod
    def _pixel_signature(function, info):
        import tensorflow as tf

        from pipelines.serving import Signature

        size, channels = info.image_size, info.channels
        return Signature(function, [tf.TensorSpec([None, size, size, channels], tf.float32, name="pixels")],
                         f"float32 images already {size}x{size}x{channels} in [0, 1] -> class")

    def format_prediction(self, record):
        return f"{Path(record['input']).name}: {record['class']}  ({self.format_top(record)})"
