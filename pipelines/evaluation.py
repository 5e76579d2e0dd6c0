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
    comparison: dict = None  # network vs baseline on the task's key metrics (:func:`compare`)


def compare(metrics, baseline, keys, lower_is_better=()):
    """Which model wins on the task's key metrics: ``{"winner": "network" | "baseline" | "mixed"
    | "tie", "network_better": [...], "baseline_better": [...], "tied": [...], "sentence": str}``,
    or None without a baseline. A report leads with the sentence, so nobody has to read a table to
    learn that the classical model did better."""
    if not baseline or not baseline.get("metrics"):
        return None
    name, theirs = baseline["name"], baseline["metrics"]
    ours_better, theirs_better, tied, shown = [], [], [], []
    for key in keys:
        mine, other = metrics.get(key), theirs.get(key)
        if not all(isinstance(v, (int, float)) and v == v for v in (mine, other)):
            continue
        shown.append(f"{key} {mine:.4f} vs {other:.4f}")
        if mine == other:
            tied.append(key)
        else:
            smaller_wins = key in lower_is_better
            (ours_better if (mine < other) == smaller_wins else theirs_better).append(key)
    if not shown:
        return None
    winner = ("mixed" if ours_better and theirs_better else "network" if ours_better
              else "baseline" if theirs_better else "tie")
    figures = f"({'; '.join(shown)})"
    if tied and winner in ("network", "baseline"):
        figures = f"and ties on {', '.join(tied)} {figures}"
    sentence = {
        "network": f"The network beats the baseline ({name}) on {', '.join(ours_better)} {figures}.",
        "baseline": f"The baseline ({name}) beats the network on {', '.join(theirs_better)} "
                    f"{figures}. On this data the classical model is the better choice.",
        "mixed": f"Mixed: the network is better on {', '.join(ours_better)}, the baseline ({name}) "
                 f"on {', '.join(theirs_better)} {figures}.",
        "tie": f"The network and the baseline ({name}) tie {figures}.",
    }[winner]
    return {"winner": winner, "network_better": ours_better, "baseline_better": theirs_better,
            "tied": tied, "sentence": sentence}


class Steps:
    """Progress of the evaluation's steps (they can take minutes: sliding windows, HD95, beam
    search, a baseline fit): each step's name when it starts and its seconds when it ends, on
    ``echo`` (stderr by default); silent without one. Inside a long loop, :meth:`share` tells
    how far the step has got, at most every ``every_s`` seconds."""

    def __init__(self, echo=None, every_s=5.0):
        self.echo, self.every_s, self.started, self.last_line = echo, every_s, None, 0.0

    def __call__(self, name):
        import time

        self.done()
        if self.echo:
            self.echo(f"  {name} ...")
        self.started = (name, time.monotonic())
        self.last_line = self.started[1]

    def share(self, done, total, what="done"):
        """``done`` of ``total`` items of the current step are finished (``what`` names them)."""
        import time

        now = time.monotonic()
        if not (self.echo and self.started) or done >= total or now - self.last_line < self.every_s:
            return
        name, start = self.started
        self.echo(f"  {name}: {done}/{total} {what} ({done / total:.0%}, {now - start:.0f} s)")
        self.last_line = now

    def done(self):
        import time

        if self.echo and self.started:
            name, start = self.started
            self.echo(f"  {name}: {time.monotonic() - start:.1f} s")
        self.started = None


def counted(items, progress, what="done"):
    """Yield each of ``items`` (a sized collection), then tell ``progress(done, total, what)``:
    the loop-side half of :meth:`Steps.share`, for a task's long per-item loops."""
    total = len(items)
    for done, item in enumerate(items, 1):
        yield item
        if progress is not None:
            progress(done, total, what)


def evaluate(task, model, test, info, config, *, train=None, history=None, progress=None):
    """Run ``task`` on the ``test`` Dataset; ``train`` (if given) fits the classical baseline.
    ``progress`` (a line printer) hears each step."""
    step = Steps(progress)
    step(f"predicting the {len(test)} test examples")
    outputs = task.predict_dataset(model, test, info, config, progress=step.share)
    step("metrics")
    result = Evaluation(metrics=task.metrics(test, outputs, info), n_samples=len(test),
                        notes=list(task.report_notes(test, info)),
                        lower_is_better=tuple(task.lower_is_better))
    if train is not None:
        step("the classical baseline")
        result.baseline = task.baseline(train, test, info, config, model=model)
        result.comparison = compare(result.metrics, result.baseline, task.key_metrics,
                                    task.lower_is_better)
    else:
        result.notes.append("No baseline: the run's training data is not available here.")
    step("tables and figures")
    result.tables.update(task.tables(test, outputs, info, baseline=result.baseline))
    for name, (png, caption) in task.figures(model, test, outputs, info, config,
                                             baseline=result.baseline).items():
        if png:
            result.figures[name] = Figure(png, caption)
    tables, highlights = task.explanations(model, test, outputs, info, config)
    step.done()
    result.tables.update(tables)
    result.highlights.update(highlights)
    if history is not None and len(history):
        result.figures["learning_curves"] = Figure(
            plots.learning_curves(history), "Learning curves: training vs validation per epoch.")
    return result
