"""Image classification task package (registers ``image-classification``)."""

from tasks.image_classification import task  # noqa: F401
