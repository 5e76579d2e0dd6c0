"""metrics.json, report.md and a self-contained report.html (figures embedded) for any task.

The HTML needs no network and no JavaScript: figures are base64 PNGs, tables are plain HTML.
"""

import base64
import html
import math
from pathlib import Path

from pipelines import runs

STYLE = """body{font-family:system-ui,sans-serif;max-width:1050px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.6em 0}td,th{border:1px solid #ccc;padding:3px 9px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}figure{margin:1.2em 0}
figcaption{color:#555;font-size:0.9em}img{max-width:100%}code{background:#f4f4f4;padding:1px 4px}
.better{color:#070;font-weight:600}.verdict{padding:6px 10px;border-left:4px solid #070}
.verdict.baseline,.verdict.mixed{border-color:#c60;background:#fff6ec}"""


def metrics_document(*, task, run_dir, data, split, evaluation, train, backbone):
    """The contract's metrics.json document (see ../shared/CONTRACT.md)."""
    return {"task": task, "run_dir": str(run_dir), "data": data, "split": split,
            "n_samples": int(evaluation.n_samples), "metrics": _clean(evaluation.metrics),
            "train": train, "backbone": backbone,
            "baseline": ({"name": evaluation.baseline["name"],
                          "metrics": _clean(evaluation.baseline["metrics"])}
                         if evaluation.baseline else None),
            "comparison": evaluation.comparison}


def _clean(value):
    """NaN is not JSON: report undefined metrics as null."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _metric_rows(document):
    baseline = (document.get("baseline") or {}).get("metrics", {})
    rows = []
    for key, value in document["metrics"].items():
        base = baseline.get(key)
        rows.append((key, value, base))
    return rows


def write(directory, document, evaluation, *, title, context):
    """Write metrics.json, figures/*.png, report.md and report.html into ``directory``.

    ``context`` is a list of (label, text) lines shown under the title: data, split, backbone,
    lineage, training time.
    """
    directory = Path(directory)
    runs.write_json(directory / runs.METRICS_FILE, document)
    for name, figure in evaluation.figures.items():
        runs.write_bytes(directory / "figures" / f"{name}.png", figure.png)
    runs.write_text(directory / "report.md", render_markdown(document, evaluation, title, context))
    runs.write_text(directory / "report.html", render_html(document, evaluation, title, context))
    return directory / "report.html"


def render_markdown(document, evaluation, title, context):
    baseline_name = (document.get("baseline") or {}).get("name", "baseline")
    lines = [f"# {title}", ""]
    lines += [f"- **{label}**: {text}" for label, text in context]
    lines += ["", f"## Test metrics ({document['split']}, n = {document['n_samples']})", "",
              f"| metric | network | {baseline_name} |", "|---|---|---|"]
    lines += [f"| {k} | {_fmt(v)} | {_fmt(b)} |" for k, v, b in _metric_rows(document)]
    if evaluation.comparison:
        lines += ["", f"**{evaluation.comparison['sentence']}**"]
    for note in evaluation.notes:
        lines += ["", f"> {note}"]
    for table_title, frame in evaluation.tables.items():
        lines += ["", f"## {table_title}", "", frame.to_markdown(index=False)]
    for section, texts in evaluation.highlights.items():
        lines += ["", f"## {section}", ""]
        lines += [f"- {_markdown_highlight(item)}" for item in texts]
    for name, figure in evaluation.figures.items():
        lines += ["", f"## {name.replace('_', ' ').capitalize()}", "",
                  f"![{name}](figures/{name}.png)", "", f"*{figure.caption}*"]
    return "\n".join(lines) + "\n"


def render_html(document, evaluation, title, context):
    esc = html.escape
    baseline_name = (document.get("baseline") or {}).get("name", "baseline")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1><ul>"]
    parts += [f"<li><b>{esc(label)}</b>: {esc(str(text))}</li>" for label, text in context]
    parts.append(f"</ul><h2>Test metrics ({esc(document['split'])}, n = {document['n_samples']})</h2>")
    parts.append(f"<table><tr><th>metric</th><th>network</th><th>{esc(baseline_name)}</th></tr>")
    for key, value, base in _metric_rows(document):
        better = (isinstance(value, float) and isinstance(base, float)
                  and (value < base if key in evaluation.lower_is_better else value > base))
        cls = " class='better'" if better else ""
        parts.append(f"<tr><td>{esc(key)}</td><td{cls}>{_fmt(value)}</td><td>{_fmt(base)}</td></tr>")
    parts.append("</table>")
    if evaluation.comparison:
        parts.append(f"<p class='verdict {evaluation.comparison['winner']}'><b>"
                     f"{esc(evaluation.comparison['sentence'])}</b></p>")
    parts += [f"<blockquote>{esc(note)}</blockquote>" for note in evaluation.notes]
    for table_title, frame in evaluation.tables.items():
        parts.append(f"<h2>{esc(table_title)}</h2>")
        parts.append(frame.to_html(index=False, border=0, escape=True))
    for section, texts in evaluation.highlights.items():
        parts.append(f"<h2>{esc(section)}</h2>")
        parts += [_html_highlight(item) for item in texts]
    for name, figure in evaluation.figures.items():
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(f"<figure><h2>{esc(name.replace('_', ' ').capitalize())}</h2>"
                     f"<img alt='{esc(name)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{esc(figure.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_highlight(item):
    """Tokens shaded by weight: green toward the caption's class, red against; no JavaScript."""
    peak = max((abs(w) for w in item.weights), default=0.0) or 1.0
    spans = []
    for token, weight in zip(item.tokens, item.weights):
        alpha = min(1.0, abs(weight) / peak)
        colour = "40,160,60" if weight >= 0 else "220,50,50"
        spans.append(f"<span style='background:rgba({colour},{alpha:.2f})' "
                     f"title='{weight:+.3f}'>{html.escape(token)}</span>")
    return f"<p class='highlight'>{' '.join(spans)}<br><small>{html.escape(item.caption)}</small></p>"


def _markdown_highlight(item, strongest=3):
    """Markdown has no colour: the strongest tokens in bold."""
    order = sorted(range(len(item.tokens)), key=lambda i: -item.weights[i])[:strongest]
    bold = {i for i in order if item.weights[i] > 0}
    text = " ".join(f"**{t}**" if i in bold else t for i, t in enumerate(item.tokens))
    return f"{text} ({item.caption})"
