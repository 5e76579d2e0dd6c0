"""Regression metrics for steering, in the data's own units: RMSE, MAE, R² and the share of frames
whose error is within a tolerance (how often the car would be steered about right)."""

import numpy as np

LOWER_IS_BETTER = ("rmse", "mae")


def steering_metrics(y_true, y_pred, tolerance):
    y_true = np.asarray(y_true, np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, np.float64).reshape(-1)
    error = y_pred - y_true
    spread = np.sum((y_true - y_true.mean()) ** 2)
    return {
        "rmse": float(np.sqrt(np.mean(error ** 2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": float(1.0 - np.sum(error ** 2) / spread) if spread > 0 else float("nan"),
        "within_tolerance": float(np.mean(np.abs(error) <= tolerance)),
    }
