"""The learning curve a plain Keras twin records for time to quality (issue 18): plain Keras,
so the twins stay free of cnn-tasks code."""

import time

import keras


class Curve(keras.callbacks.Callback):
    """Appends (seconds since training began, ``logs[metric]``) to ``points`` after each epoch,
    as the pipeline's history.csv does in its ``seconds`` column."""

    def __init__(self, points, metric):
        super().__init__()
        self.points, self.metric = points, metric

    def on_train_begin(self, logs=None):
        if not hasattr(self, "start"):  # one clock across the fits of a two-phase training
            self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.points.append((time.perf_counter() - self.start, float(logs[self.metric])))


def callbacks(curve, metric):
    """[Curve] when ``curve`` is a list to fill, else none."""
    return [] if curve is None else [Curve(curve, metric)]
