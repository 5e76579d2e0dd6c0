"""The run directory: new ids, atomic writes, never overwrite, lineage, listing.

Layout (see ../shared/CONTRACT.md): ``<root>/<task>/<run-id>/`` holding config.json, model.keras,
backbone.weights.h5 + backbone.json, assets/, history.csv, metrics.json, report.html, report.md,
figures/. Every file is written to a temporary name in the same folder and renamed into place, so
a crash never leaves a half-written model or report behind.
"""

import datetime
import json
import os
import secrets
import tempfile
from pathlib import Path

from pipelines.errors import UserError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
STATUS_FILE = "status.json"
MODEL_FILE = "model.keras"
CHECKPOINTS_DIR = "checkpoints"  # the best epoch's weights, kept through crashes and divergence
BEST_WEIGHTS = f"{CHECKPOINTS_DIR}/best.weights.h5"
BACKUP_DIR = "backup"  # BackupAndRestore's state per phase; removed once the run has finished


def new_run_id(now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def check_run_id(root, task, run_id):
    """A ``--run-id`` must be a plain folder name not taken yet; checked before any work."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith(".") or len(run_id) > 64:
        raise UserError(f"--run-id {run_id!r}: use a plain folder name of at most 64 characters")
    if (Path(root) / task / run_id).exists():
        raise UserError(f"--run-id {run_id}: {Path(root) / task / run_id} already exists (a run is "
                        f"never overwritten; continue it with --resume)")


def create_run_dir(root, task, run_id=None):
    """Make a fresh ``root/task/<run-id>`` (``run_id`` when given, e.g. one id for every worker
    of a cluster); an existing directory is never reused."""
    parent = Path(root) / task
    if run_id is not None:
        check_run_id(root, task, run_id)
        parent.mkdir(parents=True, exist_ok=True)
        try:
            (parent / run_id).mkdir()
        except FileExistsError:  # taken between the check and now
            check_run_id(root, task, run_id)
        return parent / run_id
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        path = parent / new_run_id()
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"could not create a new run directory under {parent}")


def current_umask():
    """The process umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic(path, write):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would hide reports from a team
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path, text):
    def write(tmp):
        Path(tmp).write_text(text, encoding="utf-8")
    _atomic(path, write)


def write_bytes(path, data):
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_model(model, path):
    """``model.save`` to a temporary ``.keras`` file, then rename (Keras wants the suffix)."""
    _atomic(path, model.save)


def save_weights(model, path):
    """Weights only, atomically; Keras wants the ``.weights.h5`` suffix on the temporary name."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".weights.h5")
    os.close(fd)
    os.remove(tmp)
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_json(path, what="file"):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None


def open_run(run_dir, *, finished=True):
    """Validate a run directory and return (path, config dict)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory")
    if not (path / CONFIG_FILE).is_file():
        raise UserError(f"{path}: not a cnn-tasks run directory (no {CONFIG_FILE})")
    config = read_json(path / CONFIG_FILE)
    if finished and not (path / MODEL_FILE).is_file():
        raise UserError(f"{path}: the run has no model.keras (unfinished? resume it with --resume)")
    return path, config


def set_status(run_dir, state, **extra):
    write_json(Path(run_dir) / STATUS_FILE, {"state": state, **extra,
                                             "updated": datetime.datetime.now(
                                                 datetime.timezone.utc).isoformat()})


def resume_command(run_dir):
    """What a user types to continue an unfinished run."""
    return f"cnn-tasks train --resume {run_dir}"


def this_process():
    """Who is training (kept in status.json), so ``runs`` can tell a live run from a killed one."""
    import os
    import socket

    return {"pid": os.getpid(), "host": socket.gethostname()}


def process_gone(status):
    """True when a run says "training" but its process, on this host, no longer exists (killed,
    or the machine restarted); unknown (another host, an older run) counts as alive."""
    import os
    import socket

    pid = status.get("pid")
    if status.get("state") != "training" or not pid or status.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def list_runs(root, task=None):
    """Every run under ``root`` (optionally one task's), newest first, with metrics if finished."""
    root = Path(root)
    rows = []
    task_dirs = [root / task] if task else sorted(p for p in root.glob("*") if p.is_dir())
    for task_dir in task_dirs:
        for run in sorted(task_dir.glob("*"), reverse=True):
            if not (run / CONFIG_FILE).is_file():
                continue
            metrics = read_optional_json(run / METRICS_FILE)
            status = read_optional_json(run / STATUS_FILE)
            state = status.get("state", "finished" if metrics else "unknown")
            row = {"task": task_dir.name, "run_dir": run, "metrics": metrics, "state": state,
                   **{key: status[key] for key in ("reason", "resume") if key in status}}
            if process_gone(status):  # killed mid-training: it can be resumed like an interrupted one
                row.update(state="interrupted", resume=resume_command(run),
                           reason=f"its training process ({status['pid']}) is gone")
            rows.append(row)
    return rows


def backbone_chain(run_dir, limit=20):
    """The runs a run's backbone came through, nearest first: [source, source's source, ...].

    Follows ``metrics.json`` ``backbone.from_run`` (else ``config.json`` ``lineage.run_dir``); stops
    at a run that started fresh, one that is gone (kept as the last entry), or a loop."""
    chain, seen = [], {Path(run_dir).resolve()}
    current = Path(run_dir)
    for _ in range(limit):
        source = (read_optional_json(current / METRICS_FILE).get("backbone") or {}).get("from_run") \
            or (read_optional_json(current / CONFIG_FILE).get("lineage") or {}).get("run_dir")
        if not source:
            break
        current = Path(source)
        chain.append(current)
        if current.resolve() in seen or not current.is_dir():
            break
        seen.add(current.resolve())
    return chain


def read_optional_json(path):
    """A JSON file's content, or {} when it is absent or unreadable (listing must not fail)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
