"""A task's epoch scores: logged as val_NAME after every epoch, before history.csv and the best
checkpoint read the logs, and drawn in a panel of their own."""

import numpy as np

from pipelines import training
from pipelines.config import TrainConfig
from pipelines.plots import curve_panels


def test_epoch_scores_reach_the_history_with_the_model_being_trained(tmp_path):
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    x = np.random.default_rng(0).random((32, 3), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype("int32")
    seen = []

    def score(trained):
        seen.append(trained)
        return {"kernel_sum": float(np.sum(trained.layers[0].get_weights()[0][:, 0]))}

    config = TrainConfig(epochs=3, batch_size=8, learning_rate=0.05)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    training.fit(model, data, data, config=config, run_dir=tmp_path, loss="sparse_categorical_crossentropy",
                 metrics=[], n_train=len(x), quiet=True, epoch_scores=score)
    history = training.read_history(tmp_path)
    assert list(history["val_kernel_sum"].round(5)) != [history["val_kernel_sum"].round(5)[0]] * 3  # it moved
    assert len(seen) == 3 and all(m is model for m in seen)
    final = float(np.sum(model.layers[0].get_weights()[0][:, 0]))  # restore_best: the best val_loss epoch's
    assert any(abs(final - v) < 1e-5 for v in history["val_kernel_sum"])


def test_a_validation_only_figure_gets_its_own_panel():
    columns = ["epoch", "loss", "seconds", "val_bleu4", "val_cider", "val_loss", "learning_rate"]
    assert curve_panels(columns) == ["loss", "bleu4", "cider"]
    assert curve_panels(["epoch", "dice", "loss", "val_dice", "val_loss"]) == ["dice", "loss"]


def test_a_worse_fine_tuning_phase_keeps_the_first_phases_best_weights(tmp_path):
    """Each phase has its own checkpoint callback; it must beat the best epoch of the phases
    before it, or its first epoch would overwrite the best weights with worse ones."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    backbone = keras.Model(inputs, keras.layers.Dense(4, activation="relu")(inputs), name="backbone")
    model = keras.Sequential([keras.Input((3,)), backbone, keras.layers.Dense(2, activation="softmax")])
    x = np.random.default_rng(0).random((64, 3), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    config = TrainConfig(epochs=4, fine_tune_epochs=2, fine_tune_lr_scale=2000.0, batch_size=16,
                         learning_rate=0.05, lr_schedule="constant")  # the second phase blows up
    training.fit(model, data, data, config=config, run_dir=tmp_path, loss="sparse_categorical_crossentropy",
                 metrics=[], n_train=len(x), quiet=True)
    history = training.read_history(tmp_path)
    best = int(history["val_loss"].idxmin())
    assert best < 4 and history["val_loss"][4:].min() > history["val_loss"][best]  # the test's premise
    reloaded = model.evaluate(data, verbose=0)
    assert abs(float(reloaded) - history["val_loss"][best]) < 1e-4  # the best epoch's weights, restored
