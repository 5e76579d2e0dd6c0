"""Medical segmentation: a U-Net over the registry's pyramid, on 2D images and NIfTI volumes.

Cases (volumes or 2D images) are what the pipeline splits, so slices of one volume stay on one
side. In 2D mode training sees slices resized to ``image_size`` (or native-scale tiles); in 3D
mode (a 3D backbone, or ``spatial_dims=3``) a 3D U-Net trains on patches of the volume, some
centred on foreground, and predicts by sliding windows blended with a Gaussian. Evaluation and
prediction reassemble each case at its own size, and metrics are per case in physical units.
"""

import dataclasses
import functools
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import augmentation
from pipelines.config import TrainConfig, option
from pipelines.data import Dataset
from pipelines.errors import UserError
from pipelines.evaluation import counted
from pipelines.inputs import Streamed
from pipelines.preprocessing import Preprocessing
from pipelines.tasks import Task, register_task
from pipelines.test_time import mirror_averaged
from tasks.medical_segmentation import baselines, figures, metrics, readers, tiles, volumes
from tasks.medical_segmentation.unet import DiceCrossEntropy, ForegroundDice, build_unet


@dataclass
class ScoredMasks:
    """A split's predicted masks (one per case, at the case's own size) and their per-case
    metrics ({class: {"dice", "iou", "hd95"}})."""

    masks: list
    per_case: list


EPOCHS = {2: 12, 3: 16}  # per mode: a 3D epoch is 2 patches a volume, a 2D one every labelled slice
# The U-Net per mode, left to the mode unless the user sets it (benchmarks/RESULTS.md, issue 16): in
# 3D on hippocampus, twice the widths (encoder 32-64-128, decoder 32) lift Dice from 0.878 to 0.883,
# where deeper, rotated, flipped, batch-Dice or longer variants all stayed at 0.875-0.878.
BACKBONE_OPTIONS = {2: {"batch_norm": True, "widths": [16, 32, 64]},
                    3: {"batch_norm": True, "widths": [32, 64, 128]}}
DECODER_WIDTH = {2: 16, 3: 32}


@dataclass
class MedicalSegmentationConfig(TrainConfig):
    data: str = option("builtin:hippocampus", help="images/ + masks/ folders, an MSD folder "
                       "(imagesTr/ + labelsTr/ NIfTI), builtin:hippocampus, builtin:phantoms or "
                       "builtin:phantoms3d")
    epochs: typing.Optional[int] = option(None, minimum=1,
                                          help=f"training epochs (default: {EPOCHS[2]} in 2D, "
                                               f"{EPOCHS[3]} in 3D)")
    batch_size: typing.Optional[int] = option(None, minimum=1,
                                              help="slices (2D) or patches (3D) per step; "
                                                   "default: 32 slices, 4 patches")
    backbone_options: dict = option(dict(BACKBONE_OPTIONS[2]),
                                    help="backbone builder arguments (defaults apply to basic_cnn "
                                    f"and its 3D twin basic_cnn3d only; in 3D: {BACKBONE_OPTIONS[3]})")
    image_size: int = option(48, minimum=8, help="square size slices are resized to for the network "
                             "(the tile size with tiling)")
    n_classes: typing.Optional[int] = option(None, minimum=2,
                                             help="classes incl. background (default: from the data)")
    slice_axis: int = option(2, choices=(0, 1, 2), help="axis volumes are sliced along")
    empty_slice_fraction: float = option(0.25, minimum=0, maximum=1,
                                         help="share of slices without foreground kept for training")
    normalization: str = option("zscore", choices=("zscore", "window"),
                                help="per-volume intensity normalisation")
    intensity_window: typing.Optional[list] = option(None, help="[low, high] for normalization=window")
    dice_weight: float = option(1.0, minimum=0, help="weight of the soft-Dice term of the loss")
    ce_weight: float = option(1.0, minimum=0, help="weight of the cross-entropy term")
    loss_class_weights: typing.Optional[list] = option(None, help="cross-entropy weight per class")
    decoder_width: typing.Optional[int] = option(None, minimum=1,
                                                 help=f"channels of the finest decoder stage (default: "
                                                      f"{DECODER_WIDTH[2]} in 2D, {DECODER_WIDTH[3]} in 3D)")
    augment: typing.Optional[bool] = option(None, help="random flips of image and mask together while "
                                            "training; default: on for 2D images, off for volumes "
                                            "(anatomy has a fixed orientation; flips cost hippocampus "
                                            "0.8 Dice points)")
    spatial_dims: typing.Optional[int] = option(None, choices=(2, 3),
                                                help="2: slices of volumes (or 2D images); 3: a 3D "
                                                     "U-Net on the volume itself; default: the "
                                                     "backbone's (a 2D backbone's 3D twin is used "
                                                     "with 3)")
    patch_size: typing.Optional[list] = option(None, help="[depth, height, width] voxels of a 3D "
                                               "training patch and sliding window; default: the "
                                               "training volumes' median shape rounded down to "
                                               "a multiple of 8, from 8 to 96 per axis")
    patches_per_case: int = option(2, minimum=1, help="3D patches drawn from each training volume")
    foreground_share: float = option(0.33, minimum=0, maximum=1,
                                     help="share of 3D patches centred on a foreground voxel")
    shift: float = option(0.1, minimum=0, maximum=0.5,
                          help="3D: random shift of each patch (and its mask) by up to this share "
                               "of its size")
    intensity_jitter: float = option(0.1, minimum=0, maximum=1,
                                     help="3D: random gain and offset of each patch's intensities")
    rotate: float = option(0.0, minimum=0, maximum=45,
                           help="3D: random rotation of each patch and its mask about the depth "
                                "axis, up to this many degrees")
    flip_axes: typing.Optional[list] = option(None, help="with augment on, mirror only these spatial "
                                              "axes (0 = the first; 3D: of the volume as stored, "
                                              "e.g. [0] for left-right in RAS); default: all")
    test_time_flips: bool = option(False, help="average each prediction over the mirror images "
                                   "the run trained with (its flip axes): 2 passes per axis")
    tiling: str = option("auto", choices=("auto", "on", "off"),
                         help="train on image_size crops at the images' own scale and predict by "
                              "overlapping, blended tiles (off: resize whole slices); auto: on for "
                              "2D images larger than image_size")


@dataclass(kw_only=True)
class SegmentationPreprocessing(Preprocessing):
    """What the data decided (classes, 2D or 3D, tiling, channels) and how the network's inputs
    are made from a case (kept with the run: prediction and export rebuild them without the
    training configuration)."""

    class_names: list
    n_classes: int
    volumes: bool  # NIfTI volumes sliced along slice_axis, or 2D images
    image_size: int
    tiled: bool  # 2D images larger than image_size: predicted tile by tile at full resolution
    channels: int
    slice_axis: int = 2
    normalization: str = "zscore"
    intensity_window: typing.Optional[list] = None
    empty_slice_fraction: float = 0.25
    spatial_dims: int = 2  # 3: the network takes patches of the volume (runs before 3D mode: 2)
    patch_size: typing.Optional[list] = None  # 3D: [depth, height, width] of a patch
    patches_per_case: int = 2
    foreground_share: float = 0.33
    mirror_axes: typing.Optional[list] = None  # spatial axes predictions are averaged over (test_time_flips)

    @property
    def patch(self):
        return tuple(int(s) for s in self.patch_size)


@register_task("medical-segmentation")
class MedicalSegmentation(Task):
    modality = "image"
    Config = MedicalSegmentationConfig
    Preprocessing = SegmentationPreprocessing
    summary = "masks for organs and lesions: U-Net over a backbone (2D images, NIfTI volumes)"
    builtin_data = tuple(readers.BUILTIN)
    key_metrics = ("dice", "iou", "hd95")
    lower_is_better = ("hd95",)  # a distance in mm (or pixels)

    def settle(self, config):
        """2D or 3D from ``spatial_dims`` and the backbone: a 3D backbone means 3D; asking for 3D
        with a 2D backbone takes its registered 3D twin (basic_cnn -> basic_cnn3d); the batch
        size (32 slices, 4 patches), epochs (12, 16), decoder width (16, 32) and, when left at
        their defaults, the backbone options of basic_cnn/basic_cnn3d follow."""
        from pipelines.backbones import BACKBONES
        from pipelines.backbones.base import twin as backbone_twin

        entry = BACKBONES.entry(config.backbone)
        dims = entry.meta.get("spatial_dims") or 2
        wanted = config.spatial_dims or dims
        backbone = config.backbone
        if wanted != dims:
            twin = backbone_twin(config.backbone, wanted)
            if twin is None:
                raise UserError(f"--set spatial_dims={wanted}: backbone {config.backbone!r} is {dims}D "
                                f"and has no registered {wanted}D twin; choose a {wanted}D backbone "
                                f"(`cnn-tasks backbones` lists their dimensions)")
            backbone = twin
        if config.patch_size is not None:
            _check_patch_size(config.patch_size)
        if config.flip_axes is not None:
            _check_flip_axes(config.flip_axes, wanted)
        batch = config.batch_size or (4 if wanted == 3 else 32)
        options = config.backbone_options
        if options == BACKBONE_OPTIONS[2] and backbone_twin(type(config)().backbone, wanted) == backbone:
            options = dict(BACKBONE_OPTIONS[wanted])  # the defaults, for this mode
        return dataclasses.replace(config, backbone=backbone, spatial_dims=wanted, batch_size=batch,
                                   epochs=config.epochs or EPOCHS[wanted], backbone_options=options,
                                   decoder_width=config.decoder_width or DECODER_WIDTH[wanted])

    # -- data --------------------------------------------------------------------------------
    def load(self, spec, config):
        if spec.startswith("builtin:"):
            cases, names, what = readers.load_builtin(spec, n_classes=config.n_classes)
        else:
            root = Path(spec)
            if not root.is_dir():
                raise UserError(f"--data {spec}: no such folder (expected images/ + masks/, or "
                                f"imagesTr/ + labelsTr/)")
            if (root / "imagesTr").is_dir():
                cases = readers.load_msd(root, n_classes=config.n_classes)
                names, what = readers.read_dataset_json(root), f"NIfTI volumes (MSD layout) at {root}"
            else:
                cases = readers.load_image_mask_folders(root, n_classes=config.n_classes)
                names, what = None, f"images/masks folders at {root}"
        if names and config.n_classes and len(names) != config.n_classes:
            names = None
        return Dataset(cases, np.arange(len(cases)), spec, f"{what}: {len(cases)} cases",
                       info={"class_names": names})

    def fit_preprocessing(self, train, config, min_size):
        cases = train.x
        n_classes = config.n_classes or (len(train.info["class_names"]) if train.info.get("class_names")
                                         else int(max(c.mask.max() for c in cases)) + 1)
        if n_classes < 2:
            raise UserError(f"{train.spec}: the masks hold only background; nothing to segment")
        names = train.info.get("class_names") or (["background", "foreground"] if n_classes == 2 else
                                                  ["background"] + [f"class {i}" for i in range(1, n_classes)])
        three_d = cases[0].mask.ndim == 3
        size = int(max(config.image_size, min_size))
        spatial_dims = int(config.spatial_dims or 2)
        if spatial_dims == 3 and not three_d:
            raise UserError(f"--data {train.spec}: 3D mode (spatial_dims=3, or a 3D backbone) needs "
                            f"volumes, and these are 2D images; use a 2D backbone")
        patch = None
        if spatial_dims == 3:
            patch = list(config.patch_size) if config.patch_size else default_patch(cases)
            patch = [max(int(p), int(min_size)) for p in patch]
        larger = np.median([max(c.mask.shape[:2]) for c in cases]) > size
        tiled = config.tiling == "on" or (config.tiling == "auto" and not three_d and larger)
        info = SegmentationPreprocessing(
            class_names=list(names), n_classes=int(n_classes), volumes=three_d, image_size=size,
            tiled=bool(tiled), channels=1 if three_d else int(cases[0].image.shape[-1]),
            slice_axis=int(config.slice_axis), normalization=config.normalization,
            intensity_window=config.intensity_window,
            empty_slice_fraction=float(config.empty_slice_fraction), spatial_dims=spatial_dims,
            patch_size=patch, patches_per_case=int(config.patches_per_case),
            foreground_share=float(config.foreground_share),
            mirror_axes=_flip_axes(config, three_d=spatial_dims == 3, volumes=three_d) if config.test_time_flips else None)
        if config.test_time_flips:
            info.notes.append(f"Predictions average the mirror images along spatial axes {info.mirror_axes} "
                              "(test_time_flips)." if info.mirror_axes else
                              "test_time_flips asked, but this run trains without flips: nothing to average.")
        return info

    def align(self, dataset, info):
        """Another dataset scored by a trained run (``evaluate --data``) must use its classes: a
        label the run does not know is refused, as training refuses one beyond n_classes."""
        for case in dataset.x:
            high = int(case.mask.max()) if case.mask.size else 0
            if high >= info.n_classes or (case.mask.size and int(case.mask.min()) < 0):
                raise UserError(f"case {case.case_id} ({case.source}), its mask: label value {high} "
                                f"is not among the run's classes 0..{info.n_classes - 1} "
                                f"({', '.join(info.class_names)})")
            if info.volumes != (case.mask.ndim == 3):
                kind = "NIfTI volumes" if info.volumes else "2D images"
                raise UserError(f"{case.source or case.case_id}: the run was trained on {kind}")
        return dataset

    def input_shape(self, info):
        if info.spatial_dims == 3:
            return info.patch + (1,)
        return (info.image_size, info.image_size, info.channels)

    def normalized_volume(self, case, info):
        return volumes.normalize(case.image, method=info.normalization, window=info.intensity_window)

    def case_slices(self, case, info):
        """(images (n, h, w, c), masks (n, h, w)) of one case at its own resolution."""
        if not info.volumes:
            return case.image[None], self.mask_slices(case, info)
        image = self.normalized_volume(case, info)
        return volumes.to_slices(image, info.slice_axis)[..., None], self.mask_slices(case, info)

    def mask_slices(self, case, info):
        """The case's masks (n, h, w) as :meth:`case_slices` gives them, without reading its image."""
        return volumes.to_slices(case.mask, info.slice_axis) if info.volumes else case.mask[None]

    def resize_images(self, images, info):
        import tensorflow as tf

        size = info.image_size
        return tf.image.resize(np.asarray(images, np.float32), (size, size), method="bilinear").numpy()

    def _units(self, slices, info):
        """A case's training units from its slices: the slices, or native-scale tiles covering
        each of them when tiled (``tiled`` is absent from runs made before tiling)."""
        if not info.tiled:
            return slices
        size = info.image_size
        return np.concatenate([tiles.grid(a, size, size)[0] for a in slices])

    def encode(self, dataset, info):
        """Training slices (or tiles, or 3D patches), chosen from the masks now and read case by
        case when tf.data asks: all at once when they fit the memory cache, else streamed."""
        if info.spatial_dims == 3:
            cases = list(dataset.x)
            stream = Streamed(functools.partial(self._patches, cases, info),
                              counts=np.full(len(cases), info.patches_per_case),
                              x_shape=info.patch + (1,), y_shape=info.patch)
            return stream, stream.targets
        rng = np.random.default_rng(0)
        cases, keeps = list(dataset.x), []
        for case in cases:
            masks = self._units(self.mask_slices(case, info), info)
            keep = masks.reshape(len(masks), -1).any(axis=1) | (rng.random(len(masks)) < info.empty_slice_fraction)
            if not ((info.volumes or info.tiled) and keep.any()):
                keep = np.ones(len(masks), bool)  # 2D images whole; a volume without labels whole
            keeps.append(keep)
        size = info.image_size
        stream = Streamed(functools.partial(self._examples, cases, keeps, info),
                          counts=np.array([int(k.sum()) for k in keeps]),
                          x_shape=(size, size, info.channels), y_shape=(size, size))
        return stream, stream.targets

    def _examples(self, cases, keeps, info, index):
        """(images float32 (n, size, size, c), masks int32 (n, size, size)) of case ``index``."""
        import tensorflow as tf

        images, masks = self.case_slices(cases[index], info)
        keep = keeps[index]
        images, masks = self._units(images, info)[keep], self._units(masks, info)[keep]
        if info.tiled:
            return images.astype(np.float32), masks.astype(np.int32)
        size = info.image_size
        return (self.resize_images(images, info),
                tf.image.resize(masks[..., None].astype(np.float32), (size, size),
                                method="nearest").numpy()[..., 0].astype(np.int32))

    def _patches(self, cases, info, index):
        """(patches float32 (k, d, h, w, 1), masks int32 (k, d, h, w)) of volume ``index``: a
        ``foreground_share`` of them centred on a random foreground voxel, the rest anywhere;
        the same patches for the same case on every read (a seed per case)."""
        case = cases[index]
        image = tiles.pad_to(self.normalized_volume(case, info), info.patch)
        mask = tiles.pad_to(case.mask, info.patch)
        corners = patch_corners(mask, info.patch, info.patches_per_case, info.foreground_share,
                                np.random.default_rng(index))
        boxes = [tuple(slice(c, c + p) for c, p in zip(corner, info.patch)) for corner in corners]
        return (np.stack([image[box] for box in boxes])[..., None].astype(np.float32),
                np.stack([mask[box] for box in boxes]).astype(np.int32))

    def augment(self, config, info):
        flip = _flip_axes(config, three_d=info.spatial_dims == 3, volumes=info.volumes)
        if info.spatial_dims == 3:
            return augmentation.spatial_augmentation(flip=flip, shift=config.shift, rotate=config.rotate,
                                                     intensity=config.intensity_jitter, masks=True)
        if not flip:
            return None
        if flip == [0, 1]:
            return augmentation.flip_with_mask
        names = [("vertical", "horizontal")[axis] for axis in flip]
        return lambda x, y, seed: augmentation.flip_with_mask(x, y, seed, axes=names)

    def class_weight(self, y, config):
        return None  # per-pixel class weights live in the loss (loss_class_weights)

    # -- model -------------------------------------------------------------------------------
    def build(self, backbone, info, config):
        return build_unet(backbone, info.n_classes, decoder_width=config.decoder_width)

    def loss(self, config, info):
        weights = config.loss_class_weights
        if weights is not None and len(weights) != info.n_classes:
            raise UserError(f"--set loss_class_weights: {len(weights)} weights for "
                            f"{info.n_classes} classes")
        return DiceCrossEntropy(info.n_classes, dice_weight=config.dice_weight,
                                ce_weight=config.ce_weight, class_weights=weights)

    def compile_metrics(self, config, info):
        return [ForegroundDice(info.n_classes)]

    # -- evaluation --------------------------------------------------------------------------
    def predictor(self, model, info):
        """What answers for the run: the network, or its average over the mirror images it
        trained with (test_time_flips); every way out (evaluate, predict, export) uses this."""
        if not info.mirror_axes:
            return model
        return mirror_averaged(model, [axis + 1 for axis in info.mirror_axes], dense=True)

    def predict_case(self, model, case, info):
        """The predicted class map of one case at its own size (volumes reassembled)."""
        import tensorflow as tf

        if info.spatial_dims == 3:
            def predict(batch):
                return model.predict(batch, batch_size=4, verbose=0)

            image = self.normalized_volume(case, info)[..., None]
            return tiles.predict_tiled(predict, image, info.patch).argmax(axis=-1).astype(np.int16)
        images, masks = self.case_slices(case, info)
        if info.tiled:
            def predict(batch):
                return model.predict(batch.astype(np.float32), batch_size=32, verbose=0)

            proba = np.stack([tiles.predict_tiled(predict, image, info.image_size) for image in images])
        else:
            proba = model.predict(self.resize_images(images, info), batch_size=32, verbose=0)
            proba = tf.image.resize(proba, masks.shape[1:3], method="bilinear").numpy()
        labels = proba.argmax(axis=-1).astype(np.int16)
        return volumes.from_slices(labels, info.slice_axis) if info.volumes else labels[0]

    def predict_dataset(self, model, dataset, info, config, progress=None):
        model = self.predictor(model, info)
        masks = [self.predict_case(model, case, info) for case in counted(dataset.x, progress, "cases predicted")]
        return self.score(dataset, masks, info, progress)

    def score(self, dataset, masks, info, progress=None):
        """Pair predicted masks with their per-case metrics, computed once for metrics, tables
        and figures (HD95's distance transforms are the costly part)."""
        classes = range(1, info.n_classes)
        pairs = counted(list(zip(dataset.x, masks)), progress, "cases scored (Dice, IoU, HD95)")
        return ScoredMasks(masks, [metrics.case_metrics(case.mask, predicted, classes, case.spacing)
                                   for case, predicted in pairs])

    def metrics(self, dataset, outputs, info):
        return metrics.mean_metrics(outputs.per_case)

    def baseline(self, train, test, info, config, model=None):
        """Otsu per image for binary 2D sets; else the probabilistic atlas of the training masks."""
        if info.n_classes == 2 and not info.volumes:
            bright = baselines.otsu_polarity((c.image.mean(-1) for c in train.x), [c.mask for c in train.x])
            predictions = [baselines.otsu(c.image, bright) for c in test.x]
            name = "otsu_threshold"
        else:
            grid = tuple(int(np.median([c.mask.shape[i] for c in train.x])) for i in range(train.x[0].mask.ndim))
            atlas = baselines.atlas([_resize_mask(c.mask, grid) for c in train.x], info.n_classes, grid)
            predictions = [baselines.atlas_predict(atlas, c.mask.shape) for c in test.x]
            name = "probabilistic_atlas"
        scored = self.score(test, predictions, info)
        return {"name": name, "metrics": self.metrics(test, scored, info), "scored": scored}

    def tables(self, dataset, outputs, info, baseline=None):
        import pandas as pd

        keys = ("dice", "iou", "hd95")
        names = info.class_names
        by_class = pd.DataFrame([{"class": names[c], **{k: round(float(np.mean([case[c][k] for case in outputs.per_case])), 4)
                                                     for k in keys}}
                                 for c in range(1, info.n_classes)])
        by_case = pd.DataFrame([{"case": case.case_id, **{k: round(metrics.class_mean(result, k), 4) for k in keys}}
                                for case, result in zip(dataset.x, outputs.per_case)]).sort_values("dice")
        unit = "mm" if dataset.x and dataset.x[0].spacing else "pixels"
        return {f"Per-class means (HD95 in {unit})": by_class, "Per-case means (worst first)": by_case}

    def figures(self, model, dataset, outputs, info, config, baseline=None):
        dice = [metrics.class_mean(r, "dice") for r in outputs.per_case]
        base_dice = None
        if baseline and "scored" in baseline:
            base_dice = [metrics.class_mean(r, "dice") for r in baseline["scored"].per_case]
        return {
            "dice_distribution": (figures.dice_distribution(dice, base_dice, baseline and baseline["name"]),
                                  "Per-case mean foreground Dice of the network and the baseline."),
            "overlays": (figures.overlays(dataset.x, outputs.masks, dice, info),
                         "Best, median and worst cases: truth (solid) and prediction (dashed) "
                         "contours per class.")}

    # -- prediction --------------------------------------------------------------------------
    def predict_inputs(self, model, inputs, info, options, out=None):
        from pipelines import imaging, runs

        target = Path(out) if out else Path("predictions")
        single = _single_output_file(target, inputs)
        flat = [item for item in inputs if not volumes.is_nifti(Path(item))]
        if flat and info.spatial_dims == 3:
            raise UserError(f"{flat[0]}: this run is a 3D U-Net; give NIfTI volumes (.nii, .nii.gz)")
        records, model = [], self.predictor(model, info)
        for item in inputs:
            path = Path(item)
            if volumes.is_nifti(path):
                volume = volumes.read_volume(path)
                case = readers.Case(volumes.case_id(path), volume.data, np.zeros(volume.data.shape, np.int16))
                mask = self.predict_case(model, case, dataclasses.replace(info, volumes=True))
                written = single or target / f"{volumes.case_id(path)}_mask.nii.gz"
                volumes.write_mask(mask, volume, written, runs.write_bytes)
            else:
                image = imaging.fit_channels(imaging.read_image(path)[None], info.channels)[0]
                case = readers.Case(path.stem, image, np.zeros(image.shape[:2], np.int16))
                mask = self.predict_case(model, case, dataclasses.replace(info, volumes=False))
                written = single or target / f"{path.stem}_mask.png"
                scale = 255 if info.n_classes == 2 else 1  # binary: 0/255; else class ids
                runs.write_bytes(written, imaging.to_png(mask.astype(np.float32) * scale / 255.0))
            counts = {info.class_names[c]: int((mask == c).sum()) for c in range(1, info.n_classes)}
            records.append({"input": str(path), "mask": str(written), "shape": list(mask.shape),
                            "voxels": counts})
        return records

    # -- serving -----------------------------------------------------------------------------
    def serving_signatures(self, model, info):
        from tasks.medical_segmentation import serving

        return serving.serving_signatures(self.predictor(model, info), info)

    def tflite_signatures(self, model, info):
        from tasks.medical_segmentation import serving

        return serving.tflite_signatures(self.predictor(model, info), info)

    def format_prediction(self, record):
        return f"{record['input']} -> {record['mask']}  {record['voxels']}"


def _flip_axes(config, *, three_d, volumes):
    """The spatial axes mirrored while training: none when augment is off (its default for
    volumes), else ``flip_axes`` or every axis of the network's input; validated here."""
    dims = 3 if three_d else 2
    flip = config.augment if config.augment is not None else not volumes
    if not flip:
        return []
    return list(range(dims)) if config.flip_axes is None else _check_flip_axes(config.flip_axes, dims)


def _check_flip_axes(axes, dims):
    if (not isinstance(axes, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes)
            or not set(axes) <= set(range(dims)) or len(set(axes)) != len(axes)):
        raise UserError(f"--set flip_axes={axes}: give distinct spatial axes among "
                        f"{list(range(dims))} (this run's input is {dims}D)")
    return sorted(axes)


def _check_patch_size(patch):
    if (not isinstance(patch, list) or len(patch) != 3
            or not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in patch)):
        raise UserError(f"--set patch_size={patch}: give three positive whole numbers "
                        f"[depth, height, width], e.g. --set patch_size=[32,48,32]")


def default_patch(cases, multiple=8, largest=96):
    """The median volume shape rounded down to a multiple of ``multiple`` (so pooling halves it
    evenly), at least ``multiple`` and at most ``largest`` per axis. nnU-Net rounds its median
    up; rounding down keeps most of a patch inside the volume, and on hippocampus 32x48x32
    patches gave the same Dice as 40x56x40 at two thirds of the time a step (RESULTS.md)."""
    median = np.median([c.mask.shape for c in cases], axis=0)
    return [int(min(largest, multiple * max(1, np.floor(m / multiple)))) for m in median]


def patch_corners(mask, patch, count, foreground_share, rng):
    """``count`` patch origins inside ``mask`` (already at least ``patch`` large): each centred
    on a random foreground voxel with probability ``foreground_share``, else uniform."""
    limits = np.array(mask.shape) - np.array(patch)
    foreground = np.argwhere(mask > 0)
    corners = []
    for _ in range(count):
        if len(foreground) and rng.random() < foreground_share:
            centre = foreground[rng.integers(len(foreground))]
            corner = np.clip(centre - np.array(patch) // 2, 0, limits)
        else:
            corner = np.array([rng.integers(0, limit + 1) for limit in limits])
        corners.append(tuple(int(c) for c in corner))
    return corners


def _resize_mask(mask, shape):
    from skimage.transform import resize

    return resize(mask, shape, order=0, preserve_range=True, anti_aliasing=False).astype(np.int16)


MASK_SUFFIXES = {"nifti": (".nii", ".nii.gz"), "image": (".png",)}


def _single_output_file(out, inputs):
    """``--out`` naming a file (a mask suffix) is that file, for one input of the matching kind;
    otherwise None (a folder). A file name for several inputs, or of the wrong kind, is refused
    before anything is predicted."""
    name = out.name.lower()
    kind = next((k for k, suffixes in MASK_SUFFIXES.items() if name.endswith(suffixes)), None)
    if kind is None:
        return None
    if len(inputs) != 1:
        raise UserError(f"--out {out}: names one file, but {len(inputs)} inputs were given; give a "
                        f"folder for their masks")
    given = "nifti" if volumes.is_nifti(Path(inputs[0])) else "image"
    if given != kind:
        wanted = " or ".join(MASK_SUFFIXES[given])
        raise UserError(f"--out {out}: the mask of {Path(inputs[0]).name} is written as {wanted}")
    return out
