"""Volume classification: CT/MRI volumes to classes (benign vs malignant lung nodules) with a 3D
backbone of the registry; a task of its own because everything around the network differs from
2D images (readers, intensity windows, 3D augmentation, mid-slice figures, the export's input)."""

import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.classification_task import ClassificationConfig, ClassificationTask, ClassPreprocessing
from pipelines.config import option
from pipelines.errors import UserError
from pipelines.heads import build_classifier
from pipelines.tasks import register_task
from pipelines.test_time import mirror_averaged
from tasks.volume_classification import figures, intensity, readers


@dataclass
class VolumeClassificationConfig(ClassificationConfig):
    data: str = option("builtin:shapes3d", help="an .npz of volumes (x/y or MedMNIST-3D), class "
                       "folders of .nii/.nii.gz/.npy, a path,label CSV, or builtin:shapes3d")
    backbone: str = option("basic_cnn3d", help="registered 3D backbone")
    backbone_options: dict = option({"batch_norm": True, "widths": [16, 32, 64]},
                                    help="backbone builder arguments (defaults apply to basic_cnn3d only)")
    epochs: int = option(40, minimum=1, help="training epochs")
    batch_size: int = option(16, minimum=1, help="volumes per step")
    learning_rate: float = option(1e-3, minimum=0, exclusive_min=True, help="peak learning rate")
    volume_size: typing.Optional[list] = option(None, help="[D, H, W] every volume is resampled to "
                                                "(default: the data's own, which must be one shape)")
    intensity: str = option("auto", choices=("auto", "window", "zscore"),
                            help="auto: a CT window when the volumes are in Hounsfield units, else z-scores")
    window: typing.Optional[list] = option(None, help="[low, high] for intensity=window "
                                           "(default -1000, 400 HU)")
    augment: bool = option(True, help="random flips, shifts and intensity jitter while training")
    augment_flip: bool = option(True, help="flip along depth, height and width, each on its own")
    augment_shift: float = option(0.1, minimum=0, maximum=0.4, help="shift, fraction of each axis")
    augment_intensity: float = option(0.1, minimum=0, maximum=0.5, help="gain/offset jitter")
    augment_rotate: float = option(15.0, minimum=0, maximum=45,
                                   help="rotation about the depth axis, up to this many degrees")
    test_time_flips: bool = option(True, help="average each prediction over the 8 mirror images of the "
                                   "volume (when it trained with flips); 8 passes per volume")
    head_dropout: float = option(0.3, minimum=0, maximum=0.9, help="dropout before the classifier")
    figure_cases: int = option(6, minimum=0, help="test volumes shown with 3D Grad-CAM")


@dataclass(kw_only=True)
class VolumePreprocessing(ClassPreprocessing):
    volume_shape: list  # [D, H, W] the network takes
    intensity: str  # "window" or "zscore", as chosen from the training volumes
    window: typing.Optional[list] = None
    test_time_flips: bool = False  # predictions averaged over the mirror images (runs before it: no)


@register_task("volume-classification")
class VolumeClassification(ClassificationTask):
    modality = "image"
    Config = VolumeClassificationConfig
    Preprocessing = VolumePreprocessing
    summary = "CT/MRI volumes to classes (e.g. benign vs malignant nodules) with a 3D backbone"
    builtin_data = readers.BUILTIN

    def load(self, spec, config):
        return readers.load(spec, volume_size=config.volume_size, seed=config.seed,
                            test_fraction=config.test_fraction, val_fraction=config.val_fraction)

    def fit_preprocessing(self, train, config, min_size):
        volumes = train.x["volumes"]
        method, window, note = intensity.choose(volumes, config.intensity, config.window)
        flips = bool(config.test_time_flips and config.augment and config.augment_flip)
        return VolumePreprocessing(class_names=list(train.info["class_names"]),
                                   volume_shape=list(volumes.shape[1:4]), intensity=method,
                                   window=window, test_time_flips=flips, notes=[note] + (
                                       ["Predictions average the 8 mirror images of each volume "
                                        "(test_time_flips)."] if flips else []))

    def align(self, dataset, info):
        dataset = super().align(dataset, info)
        if list(dataset.x["volumes"].shape[1:4]) != list(info.volume_shape):
            raise UserError(f"{dataset.spec}: volumes of {dataset.x['volumes'].shape[1:4]}, the run "
                            f"takes {tuple(info.volume_shape)}; set volume_size to resample them")
        return dataset

    def input_shape(self, info):
        return tuple(info.volume_shape) + (1,)

    def network_input(self, volumes, info):
        return intensity.normalize(volumes, info.intensity, info.window)

    def encode(self, dataset, info):
        return self.network_input(dataset.x["volumes"], info), np.asarray(dataset.y, np.int32)

    def augment(self, config, info):
        from pipelines.augmentation import spatial_augmentation

        if not config.augment:
            return None
        return spatial_augmentation(flip=config.augment_flip, shift=config.augment_shift,
                                    intensity=config.augment_intensity, rotate=config.augment_rotate)

    def build(self, backbone, info, config):
        return build_classifier(backbone, len(info.class_names), pool="avg", norm=self.head_norm(config),
                                dropout=config.head_dropout)

    def predictor(self, model, info):
        """What answers for the run: the network, or its average over mirror images."""
        return mirror_averaged(model, (1, 2, 3)) if info.test_time_flips else model

    def predict_dataset(self, model, dataset, info, config, progress=None):
        return self.predictor(model, info).predict(self.encode(dataset, info)[0], batch_size=64, verbose=0)

    def baseline(self, train, test, info, config, model=None):
        """Logistic regression on the voxels (standardised), same split; the size rule beside it
        in the table when the data gives nodule diameters."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x_train, y_train = self.encode(train, info)
        x_test, y_test = self.encode(test, info)
        result = self.probability_baseline(
            "logistic_regression_voxels",
            make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)),
            x_train.reshape(len(x_train), -1), y_train, x_test.reshape(len(x_test), -1), y_test, info)
        if "diameter" in train.x and "diameter" in test.x and len(info.class_names) == 2:
            from tasks.volume_classification.baselines import size_rule

            result["size_rule"] = size_rule(train.x["diameter"], y_train, test.x["diameter"], y_test,
                                            len(info.class_names))
        return result

    def tables(self, dataset, outputs, info, baseline=None):
        import pandas as pd

        tables = super().tables(dataset, outputs, info, baseline)
        if baseline:
            rows = [{"predictor": "network", **self.metrics(dataset, outputs, info)},
                    {"predictor": baseline["name"], **baseline["metrics"]}]
            if "size_rule" in baseline:
                rule = baseline["size_rule"]
                rows.append({"predictor": rule["name"], **rule["metrics"]})
            tables["The network beside the baselines (test split)"] = pd.DataFrame(rows).round(4)
        return tables

    def figures(self, model, dataset, outputs, info, config, baseline=None):
        y = np.asarray(dataset.y)
        result = self.classification_figures(y, outputs, info, baseline)
        if config.figure_cases:
            result["slices_gradcam"] = figures.slices_figure(
                model, self.encode(dataset, info)[0], y, outputs, info.class_names, config.figure_cases)
        return result

    # -- prediction --------------------------------------------------------------------------
    def read_inputs(self, paths, info):
        """Volume files (.nii/.nii.gz/.npy) as the network takes them."""
        volumes = []
        for path in paths:
            if not readers.is_volume_file(path):
                raise UserError(f"{path}: expected a .nii, .nii.gz or .npy volume")
            volume = readers.read_volume_file(path)
            if list(volume.shape) != list(info.volume_shape):
                volume = readers.resample(volume, info.volume_shape)
            volumes.append(volume)
        return self.network_input(np.stack(volumes)[..., None], info)

    def predict_inputs(self, model, inputs, info, options, out=None):
        proba = self.predictor(model, info).predict(self.read_inputs(inputs, info), verbose=0)
        return [{"input": str(path), **record}
                for path, record in zip(inputs, self.top_classes(proba, info, options))]

    def format_prediction(self, record):
        return f"{Path(record['input']).name}: {record['class']}  ({self.format_top(record)})"

    # -- serving -----------------------------------------------------------------------------
    def serving_signatures(self, model, info):
        import tensorflow as tf

        from pipelines.serving import Signature

        shape, predictor = list(info.volume_shape), self.predictor(model, info)

        def serving_default(volumes):
            pixels = intensity.normalize_in_graph(volumes[..., None], info.intensity, info.window)
            return self.class_outputs(predictor(pixels, training=False), info)

        return {"serving_default": Signature(
                    serving_default, [tf.TensorSpec([None] + shape, tf.float32, name="volumes")],
                    f"float32 volumes [N, {', '.join(map(str, shape))}] in the data's own units "
                    f"(e.g. HU) -> class; {info.intensity} intensities in the graph"),
                "predict_voxels": self._voxel_signature(predictor, info, names=True)}

    def tflite_signatures(self, model, info):
        return {"predict_voxels": self._voxel_signature(self.predictor(model, info), info, names=False)}

    def _voxel_signature(self, predictor, info, *, names):
        import tensorflow as tf

        from pipelines.serving import Signature

        def predict_voxels(voxels):
            return self.class_outputs(predictor(voxels, training=False), info, names=names)

        return Signature(predict_voxels, [tf.TensorSpec((None,) + self.input_shape(info), tf.float32,
                                                        name="voxels")],
                         "float32 volumes already normalised, [N, D, H, W, 1] -> class")
