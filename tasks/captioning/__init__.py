"""Captioning: CNN encoder + attention RNN decoder (Show, Attend and Tell)."""

from tasks.captioning import task  # noqa: F401  (registers the task)
