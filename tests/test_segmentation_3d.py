"""3D mode of medical segmentation, piece by piece: patches, sliding windows, the U-Net in 3D,
and how the configuration settles 2D or 3D."""

import numpy as np
import pytest

from pipelines.errors import UserError
from tasks.medical_segmentation import tiles
from tasks.medical_segmentation.task import (BACKBONE_OPTIONS, DECODER_WIDTH, MedicalSegmentation, default_patch,
                                             patch_corners)


@pytest.mark.parametrize("shape", [(13, 17, 11), (8, 8, 8), (5, 20, 7)])
def test_a_pointwise_network_is_reassembled_exactly_from_3d_patches(shape):
    rng = np.random.default_rng(0)
    volume = rng.random(shape + (1,)).astype(np.float32)
    calls = []

    def predict(batch):
        calls.append(batch.shape)
        return np.concatenate([1 - batch, batch], axis=-1)

    proba = tiles.predict_tiled(predict, volume, (8, 8, 8))
    assert proba.shape == shape + (2,)
    assert calls[0][1:] == (8, 8, 8, 1)
    np.testing.assert_allclose(proba[..., 1], volume[..., 0], atol=1e-6)


def test_3d_windows_are_gaussian_and_2d_ones_stay_hann():
    weights = tiles.window((9, 9, 9))
    assert weights.shape == (9, 9, 9)
    assert np.unravel_index(weights.argmax(), weights.shape) == (4, 4, 4)
    np.testing.assert_allclose(weights, weights[::-1, ::-1, ::-1])
    assert weights.min() > 0 and weights[4, 4, 0] < 0.01 * weights[4, 4, 4]  # sigma = size / 8
    flat = tiles.window(9)
    ramp = np.hanning(11)[1:-1]
    np.testing.assert_allclose(flat - 1e-3, np.outer(ramp, ramp) / np.outer(ramp, ramp).max(), atol=1e-6)


def test_patch_corners_stay_inside_and_centre_on_foreground_when_asked():
    mask = np.zeros((30, 40, 20), np.int16)
    mask[25:28, 2:4, 15:18] = 1
    rng = np.random.default_rng(0)
    for corner in patch_corners(mask, (8, 8, 8), 50, 1.0, rng):
        box = tuple(slice(c, c + 8) for c in corner)
        assert all(0 <= c <= s - 8 for c, s in zip(corner, mask.shape))
        assert mask[box].any()
    anywhere = patch_corners(mask, (8, 8, 8), 200, 0.0, rng)
    assert sum(mask[tuple(slice(c, c + 8) for c in corner)].any() for corner in anywhere) < 20
    assert len(set(anywhere)) > 100


def test_the_default_patch_is_the_median_shape_rounded_down_to_8_within_bounds():
    class Case:
        def __init__(self, shape):
            self.mask = np.zeros(shape)

    # hippocampus: median 35x50x36
    assert default_patch([Case((35, 50, 36)), Case((31, 40, 24)), Case((43, 59, 47))]) == [32, 48, 32]
    assert default_patch([Case((300, 20, 512))]) == [96, 16, 96]
    assert default_patch([Case((5, 8, 17))]) == [8, 8, 16]  # never below one multiple


def test_epochs_follow_the_mode_unless_given():
    from pipelines.workflow import resolve_config
    from tasks.medical_segmentation.task import EPOCHS

    task = MedicalSegmentation()
    assert resolve_config(task).epochs == EPOCHS[2] == 12
    assert resolve_config(task, sets={"spatial_dims": 3}).epochs == EPOCHS[3] == 16
    assert resolve_config(task, sets={"spatial_dims": 3}, flags={"epochs": 3}).epochs == 3


@pytest.mark.parametrize("shape", [(16, 16, 16), (13, 17, 11)])
def test_the_3d_unet_answers_every_voxel_of_its_input(shape):
    from pipelines.backbones import create_backbone
    from tasks.medical_segmentation.unet import DiceCrossEntropy, build_unet

    backbone = create_backbone("basic_cnn3d", shape + (1,), widths=[4, 8, 8], batch_norm=True)
    model = build_unet(backbone, 3, decoder_width=4)
    assert model.output_shape == (None,) + shape + (3,)
    assert {layer.name for layer in model.layers} >= {"decoder_p1_conv1", "decoder_full_conv1", "logits"}
    labels = np.random.default_rng(0).integers(0, 3, (2,) + shape)
    perfect = np.eye(3, dtype=np.float32)[labels]
    loss = DiceCrossEntropy(3)
    assert float(loss(labels, perfect)) < 1e-3
    assert float(loss(labels, np.full_like(perfect, 1 / 3))) > 1.0


def _settled(**values):
    from pipelines import config as config_lib

    task = MedicalSegmentation()
    return task.settle(config_lib.resolve(task.Config, sets=values))


def test_spatial_dims_and_backbone_settle_together():
    plain = _settled()
    assert (plain.spatial_dims, plain.backbone, plain.batch_size) == (2, "basic_cnn", 32)
    asked = _settled(spatial_dims=3)
    assert (asked.spatial_dims, asked.backbone, asked.batch_size) == (3, "basic_cnn3d", 4)
    # the U-Net's size follows the mode unless set: twice the widths in 3D (RESULTS.md, issue 16)
    assert (plain.backbone_options, plain.decoder_width) == (BACKBONE_OPTIONS[2], DECODER_WIDTH[2])
    assert (asked.backbone_options, asked.decoder_width) == (BACKBONE_OPTIONS[3], DECODER_WIDTH[3])
    assert asked.backbone_options["widths"] == [32, 64, 128] and asked.decoder_width == 32
    chosen = _settled(spatial_dims=3, backbone_options={"widths": [8, 16, 16]}, decoder_width=8)
    assert (chosen.backbone_options, chosen.decoder_width) == ({"batch_norm": True, "widths": [8, 16, 16]}, 8)
    by_backbone = _settled(backbone="resnet18_3d")
    assert (by_backbone.spatial_dims, by_backbone.batch_size) == (3, 4)
    assert _settled(backbone="resnet18_3d", spatial_dims=2).backbone == "resnet18"
    assert _settled(spatial_dims=3, batch_size=2).batch_size == 2
    assert MedicalSegmentation().settle(asked) == asked  # idempotent (a resumed run settles again)
    # the twin of the task's default backbone takes the default builder options of its mode
    assert _settled(backbone="basic_cnn3d").backbone_options == BACKBONE_OPTIONS[3]
    assert _settled(backbone="resnet18_3d").backbone_options == {}  # tuned for basic_cnn only


@pytest.mark.parametrize("values,message", [
    ({"backbone": "mobilenet_v2", "spatial_dims": 3}, "is 2D and has no registered 3D twin"),
    ({"spatial_dims": 3, "patch_size": [8, 8]}, "give three positive whole numbers"),
    ({"spatial_dims": 3, "patch_size": [8, 0, 8]}, "give three positive whole numbers"),
])
def test_impossible_3d_settings_are_refused_with_the_fix(values, message):
    with pytest.raises(UserError, match=message):
        _settled(**values)


def test_flip_axes_choose_which_axes_mirror_and_are_refused_out_of_range():
    from tasks.medical_segmentation.task import _flip_axes

    volumes = _settled(spatial_dims=3)
    assert _flip_axes(volumes, three_d=True, volumes=True) == []  # volumes train without flips by default
    chosen = _settled(spatial_dims=3, augment=True, flip_axes=[0])
    assert _flip_axes(chosen, three_d=True, volumes=True) == [0]
    assert _flip_axes(_settled(spatial_dims=3, augment=True), three_d=True, volumes=True) == [0, 1, 2]
    assert _flip_axes(_settled(), three_d=False, volumes=False) == [0, 1]  # 2D images flip both ways
    with pytest.raises(UserError, match=r"flip_axes=\[3\]: give distinct spatial axes among \[0, 1, 2\]"):
        _flip_axes(_settled(spatial_dims=3, augment=True, flip_axes=[3]), three_d=True, volumes=True)


def test_only_the_chosen_axis_is_ever_mirrored():
    import tensorflow as tf

    from pipelines.augmentation import axis_flips

    x = np.arange(64 * 4 * 5 * 6, dtype=np.float32).reshape(64, 4, 5, 6, 1)
    out = axis_flips(tf.constant(x), tf.constant([3, 4], tf.int64), axes=(0,)).numpy()
    same = [np.array_equal(o, i) for o, i in zip(out, x)]
    mirrored = [np.array_equal(o, i[::-1]) for o, i in zip(out, x)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 54


def test_a_dense_mirror_average_is_equivariant_to_the_mirrors():
    """Averaging un-mirrored maps over the mirror images makes the prediction of a mirrored
    volume exactly the mirrored prediction, which no single pass of the network guarantees."""
    import keras

    from pipelines.test_time import mirror_averaged

    net = keras.Sequential([keras.Input((6, 7, 5, 1)), keras.layers.Conv3D(4, 3, padding="same", activation="relu"),
                            keras.layers.Conv3D(2, 3, padding="same", activation="softmax")])
    x = np.random.default_rng(1).normal(size=(2, 6, 7, 5, 1)).astype(np.float32)
    averaged = mirror_averaged(net, (1,), dense=True)
    np.testing.assert_allclose(averaged.predict(x[:, ::-1], verbose=0), averaged.predict(x, verbose=0)[:, ::-1],
                               atol=1e-5)
    expected = (net.predict(x, verbose=0) + net.predict(x[:, ::-1], verbose=0)[:, ::-1]) / 2
    np.testing.assert_allclose(averaged.predict(x, verbose=0), expected, atol=1e-5)
