"""The one evaluation entry: a task's predictions, metrics, baseline, tables and figures on a split.

No task logic lives here; the task supplies each piece and this module assembles an
:class:`Evaluation` that :mod:`pipelines.reports` writes out.
"""

from dataclasses import dataclass, field

from pipelines import plots


@dataclass
class Figure:
    png: bytes
    caption: str


@dataclass
class HighlightedText:
    """Tokens with one weight each (positive: toward the class the caption names), shaded in the
    HTML report."""

    tokens: list
    weights: list
    caption: str


@dataclass
class Evaluation:
    metrics: dict
    n_samples: int
    baseline: dict = None  # {"name": str, "metrics": {...}} on the same split and keys
    tables: dict = field(default_factory=dict)  # title -> pandas.DataFrame
    figures: dict = field(default_factory=dict)  # file stem -> Figure
    notes: list = field(default_factory=list)
    highlights: dict = field(default_factory=dict)  # title -> [HighlightedText]
    lower_is_better: tuple = ()  # metric names where a smaller value wins (the task declares them)


def evaluate(task, model, test, info, config, *, train=None, history=None):
    """Run ``task`` on the ``test`` Dataset; ``train`` (if given) fits the classical baseline."""
    outputs = task.predict_dataset(model, test, info, config)
    result = Evaluation(metrics=task.metrics(test, outputs, info), n_samples=len(test),
                        notes=list(task.report_notes(test, info)),
                        lower_is_better=tuple(task.lower_is_better))
    if train is not None:
        result.baseline = task.baseline(train, test, info, config, model=model)
    else:
        result.notes.append("No baseline: the run's training data is not available here.")
    result.tables.update(task.tables(test, outputs, info, baseline=result.baseline))
    for name, (png, caption) in task.figures(model, test, outputs, info, config,
                                             baseline=result.baseline).items():
        if png:
            result.figures[name] = Figure(png, caption)
    tables, highlights = task.explanations(model, test, outputs, info, config)
    result.tables.update(tables)
    result.highlights.update(highlights)
    if history is not None and len(history):
        result.figures["learning_curves"] = Figure(
            plots.learning_curves(history), "Learning curves: training vs validation per epoch.")
    return result
