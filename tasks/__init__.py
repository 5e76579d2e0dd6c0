"""Task packages. Importing this package registers every task with :data:`pipelines.tasks.TASKS`."""

from tasks import captioning, image_classification, medical_segmentation, text_classification  # noqa: F401
