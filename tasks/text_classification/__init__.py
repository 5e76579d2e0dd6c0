"""Text classification: a CNN over word vectors (Kim 2014), tokenized with tensorflow-text."""

from tasks.text_classification import task  # noqa: F401  (registers the task)
