"""Every registered image backbone builds, honours the pyramid strides and trains one epoch."""

import math

import keras
import numpy as np
import pytest

from pipelines.backbones import BACKBONES, create_backbone, pyramid_outputs
from pipelines.errors import UserError
from pipelines.heads import build_classifier

TINY = {"basic_cnn": {"widths": [4, 8, 8]}, "vgg_small": {"width": 0.125},
        "resnet18": {"width": 0.0625}, "mobilenet_v2": {"alpha": 0.35}, "mobilenet": {"alpha": 0.25},
        "efficientnet_b0": {}, "efficientnet_lite0": {},
        "pilotnet": {"width": 0.25}, "basic_cnn3d": {"widths": [4, 8, 8]}, "efficientnet_lite0_3d": {},
        "resnet18_3d": {"width": 0.0625}}
# "keras_hub" is built from a preset folder, so tests/test_pretrained.py makes one and tests it
IMAGE_BACKBONES = [e.name for e in BACKBONES.entries()
                   if e.meta["modality"] == "image" and e.meta["spatial_dims"] == 2 and e.name != "keras_hub"]
VOLUME_BACKBONES = [e.name for e in BACKBONES.entries()
                    if e.meta["modality"] == "image" and e.meta["spatial_dims"] == 3]


def test_every_image_backbone_has_tiny_settings():
    assert set(IMAGE_BACKBONES + VOLUME_BACKBONES) == set(TINY), \
        "add tiny options for the new backbone to TINY"
    assert {"basic_cnn3d", "resnet18_3d"} <= set(VOLUME_BACKBONES)


@pytest.mark.parametrize("name", IMAGE_BACKBONES)
@pytest.mark.parametrize("size, channels", [(32, 3), (8, 1)])
def test_backbone_trains_one_epoch_with_documented_strides(name, size, channels):
    keras.utils.set_random_seed(0)
    size = max(size, BACKBONES.entry(name).meta["min_size"])  # digits are resized up to the minimum
    backbone = create_backbone(name, (size, size, channels), **TINY[name])
    levels = pyramid_outputs(backbone)
    assert list(levels)[0] == "P1" and len(levels) >= 3
    for level, tensor in levels.items():
        stride = 2 ** int(level[1:])
        assert tuple(tensor.shape[1:3]) == (math.ceil(size / stride),) * 2
    model = build_classifier(backbone, 3)
    # one graph-compiled epoch at 32x32 RGB; the gray case trains eagerly: the same layers and
    # gradients without a second graph trace, which costs half a minute for the deepest backbones
    model.compile("adam", loss="sparse_categorical_crossentropy", run_eagerly=channels == 1)
    x = np.random.default_rng(0).random((8, size, size, channels), dtype=np.float32)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, np.arange(8) % 3, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # it learnt


def test_a_size_the_strides_cannot_halve_evenly_is_a_user_error():
    with pytest.raises(UserError, match="multiple of 32.*got 40x40"):
        create_backbone("mobilenet", (40, 40, 3), alpha=0.25)


def test_too_small_input_is_a_user_error():
    with pytest.raises(UserError, match="at least 32 along every axis, got 8x8"):
        create_backbone("resnet18", (8, 8, 1))


def test_bad_backbone_option_is_a_user_error():
    with pytest.raises(UserError, match="backbone_options"):
        create_backbone("basic_cnn", (8, 8, 1), depth=3)


def test_task_default_backbone_options_apply_to_the_default_backbone_and_its_twin_only():
    from pipelines.transfer import builder_options
    from tasks.medical_segmentation.task import MedicalSegmentationConfig

    tuned = MedicalSegmentationConfig()
    assert builder_options(tuned) == tuned.backbone_options != {}
    # the 3D twin is the same builder: the tuned widths and batch norm are its too
    assert builder_options(MedicalSegmentationConfig(backbone="basic_cnn3d")) == tuned.backbone_options
    assert builder_options(MedicalSegmentationConfig(backbone="resnet18")) == {}
    chosen = MedicalSegmentationConfig(backbone="resnet18", backbone_options={"width": 16})
    assert builder_options(chosen, {"extra": 1}) == {"width": 16, "extra": 1}


@pytest.mark.parametrize("name", VOLUME_BACKBONES)
def test_volume_backbone_trains_one_epoch_with_strides_on_every_axis(name):
    keras.utils.set_random_seed(0)
    shape = (16, 24, 20, 1)  # depth thinner than height and width, as CT crops are
    backbone = create_backbone(name, shape, **TINY[name])
    levels = pyramid_outputs(backbone)
    assert list(levels)[0] == "P1" and len(levels) >= 3
    for level, tensor in levels.items():
        stride = 2 ** int(level[1:])
        assert tuple(tensor.shape[1:4]) == tuple(math.ceil(s / stride) for s in shape[:3]), level
    model = build_classifier(backbone, 2)  # global pooling over depth, height and width
    model.compile("adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((6,) + shape, dtype=np.float32)
    history = model.fit(x, np.arange(6) % 2, epochs=1, batch_size=3, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_images_and_volumes_meet_only_backbones_of_their_dimensions():
    with pytest.raises(UserError, match="takes volumes .* use a 2D backbone for images"):
        create_backbone("basic_cnn3d", (32, 32, 1))
    with pytest.raises(UserError, match="use a 3D backbone for volumes"):
        create_backbone("basic_cnn", (16, 32, 32, 1))
    with pytest.raises(UserError, match="at least 16 along every axis, got 8x32x32"):
        create_backbone("resnet18_3d", (8, 32, 32, 1))


def test_a_2d_backbone_inflated_into_its_3d_twin_answers_identical_slices_as_in_2d():
    """I3D inflation: each kernel repeated along depth / depth, so away from the depth borders
    (zero padding) a volume of identical slices gives the 2D feature map on every slice."""
    from pipelines.transfer import copy_weights

    keras.utils.set_random_seed(0)
    flat = create_backbone("basic_cnn", (16, 16, 3), widths=[4, 8], convs_per_stage=1)
    deep = create_backbone("basic_cnn3d", (8, 16, 16, 1), widths=[4, 8], convs_per_stage=1)
    copy_weights(flat, deep, where="test")  # and RGB -> one channel (kernels summed)
    image = np.random.default_rng(1).random((1, 16, 16, 1), dtype=np.float32)
    first = "stage1_relu1"
    response_2d = keras.Model(flat.input, flat.get_layer(first).output)(np.repeat(image, 3, -1)).numpy()
    volume = np.repeat(image[:, None], 8, axis=1)
    response_3d = keras.Model(deep.input, deep.get_layer(first).output)(volume).numpy()
    for depth in range(1, 7):  # slices 0 and 7 see the zero padding
        np.testing.assert_allclose(response_3d[:, depth], response_2d, rtol=1e-5, atol=1e-5)


def test_lite0_depthwise_kernels_inflate_into_grouped_3d_convolutions():
    """Keras has no DepthwiseConv3D: the 3D Lite0 uses a Conv3D with one group per channel, and
    the 2D depthwise kernel (kh, kw, c, 1) inflates into it (kd, kh, kw, 1, c), so identical
    slices give the 2D response away from the depth borders, as for ordinary kernels."""
    from pipelines.transfer import copy_weights

    keras.utils.set_random_seed(0)
    flat = create_backbone("efficientnet_lite0", (32, 32, 3))
    deep = create_backbone("efficientnet_lite0_3d", (16, 32, 32, 1))
    copy_weights(flat, deep, where="test")
    assert deep.get_layer("block1_dw_conv").get_weights()[0].shape == (3, 3, 3, 1, 96)
    image = np.random.default_rng(1).random((1, 32, 32, 1), dtype=np.float32)
    response_2d = flat.predict(np.repeat(image, 3, -1), verbose=0)["P1"]
    response_3d = deep.predict(np.repeat(image[:, None], 16, axis=1), verbose=0)["P1"]
    # of 8 at stride 2: the stem's "same" padding reaches slice 7, the depthwise 3x3 slices 0 and 6
    for depth in range(1, 6):
        np.testing.assert_allclose(response_3d[:, depth], response_2d, rtol=1e-5, atol=1e-5)


def test_a_thin_volume_can_keep_its_depth_and_the_strides_are_declared():
    """Anisotropic pooling: [1,2,2] first keeps depth; each level's strides follow, U-Net decoders
    upsample by them, and the TFLite rewrite pools the same way."""
    import keras

    from pipelines.backbones import create_backbone
    from pipelines.backbones.base import level_strides
    from pipelines.tflite_ops import for_tflite
    from tasks.medical_segmentation.unet import build_unet

    backbone = create_backbone("basic_cnn3d", (8, 16, 12, 1), widths=[4, 4, 8], pool_sizes=[[1, 2, 2], 2, 2])
    assert level_strides(backbone) == {"P1": [1, 2, 2], "P2": [2, 4, 4], "P3": [4, 8, 8]}
    assert tuple(backbone.output["P3"].shape[1:4]) == (2, 2, 2)
    unet = build_unet(backbone, 2, decoder_width=4)
    assert unet.output_shape == (None, 8, 16, 12, 2)
    x = np.random.default_rng(0).normal(size=(2, 8, 16, 12, 1)).astype(np.float32)
    np.testing.assert_allclose(for_tflite(unet).predict(x, verbose=0), unet.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(Exception, match="each stage pools by 1 or 2"):
        create_backbone("basic_cnn3d", (8, 8, 8, 1), widths=[4], pool_sizes=[[3, 2, 2]])
    keras.backend.clear_session()


def test_a_thin_volume_fits_a_backbone_that_keeps_its_depth():
    """The least input is the total stride per axis: a volume 2 slices deep is refused by three
    2x2x2 stages (at least 8 each way) and taken when the first two stages leave depth alone."""
    from pipelines.backbones import create_backbone
    from pipelines.backbones.base import min_shape
    from pipelines.errors import UserError

    keep_depth = {"widths": [4, 4, 4], "pool_sizes": [[1, 2, 2], [1, 2, 2], 2]}
    assert min_shape("basic_cnn3d", 3) == (8, 8, 8)
    assert min_shape("basic_cnn3d", 3, keep_depth) == (2, 8, 8)
    assert min_shape("basic_cnn", 2, {"widths": [4, 4]}) == (4, 4)
    assert min_shape("resnet18", 2) == (32, 32)  # an entry without min_shape: its min_size each way
    with pytest.raises(UserError, match=r"needs inputs of at least 8 along every axis, got 2x16x16"):
        create_backbone("basic_cnn3d", (2, 16, 16, 1), widths=[4, 4, 4])
    with pytest.raises(UserError, match=r"needs inputs of at least 2x8x8, got 1x16x16; set image_size or volume_size"):
        create_backbone("basic_cnn3d", (1, 16, 16, 1), **keep_depth)
    backbone = create_backbone("basic_cnn3d", (2, 16, 16, 1), **keep_depth)
    assert tuple(backbone.output["P3"].shape[1:4]) == (1, 2, 2)
