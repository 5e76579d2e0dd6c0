import dataclasses

import pytest

from pipelines import config as config_lib
from pipelines.errors import UserError
from pipelines.registry import Registry
from tasks.image_classification.task import ImageClassificationConfig


def test_registry_suggests_closest_name():
    registry = Registry("widget")
    registry.register("resnet18", modality="image")(object())
    registry.register("basic_cnn", modality="image")(object())
    with pytest.raises(UserError, match=r"unknown widget 'resnet19'.*Did you mean 'resnet18'"):
        registry.get("resnet19")
    assert registry.names() == ["basic_cnn", "resnet18"]
    assert registry.entry("resnet18").meta == {"modality": "image"}


def test_registry_refuses_duplicates():
    registry = Registry("widget")
    registry.register("a")(1)
    with pytest.raises(ValueError):
        registry.register("a")(2)


def test_precedence_defaults_toml_set_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('epochs = 5\nbatch_size = 16\nlearning_rate = 0.01\n[backbone_options]\nwidths = [8, 16]\n')
    cfg = config_lib.resolve(ImageClassificationConfig, toml=toml,
                             sets=config_lib.parse_set(["batch_size=8", "backbone_options.pool_type=average"]),
                             flags={"batch_size": 4, "epochs": None})
    assert cfg.epochs == 5  # toml beats default; a None flag is ignored
    assert cfg.batch_size == 4  # flag beats --set beats toml
    assert cfg.learning_rate == 0.01
    assert cfg.backbone_options == {"widths": [8, 16], "pool_type": "average"}
    assert cfg.data == "builtin:digits"  # default


@pytest.mark.parametrize("sets, message", [
    (["epochz=3"], "unknown key 'epochz'"),
    (["epochs=-1"], "epochs must be >= 1"),
    (["epochs=abc"], "epochs must be int"),
    (["lr_schedule=linear"], "not one of"),
    (["test_fraction=0"], "test_fraction must be > 0"),
])
def test_bad_settings_name_the_key(sets, message):
    with pytest.raises(UserError, match=message):
        config_lib.resolve(ImageClassificationConfig, sets=config_lib.parse_set(sets))


def test_unknown_toml_key_names_the_file(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("epoch = 3\n")
    with pytest.raises(UserError, match=r"bad.toml: unknown key 'epoch'"):
        config_lib.resolve(ImageClassificationConfig, toml=toml)


def test_set_values_parse_as_toml():
    assert config_lib.parse_set(["a=1", "b=0.5", "c=true", "d=[1,2]", "e=hello"]) == {
        "a": 1, "b": 0.5, "c": True, "d": [1, 2], "e": "hello"}


def test_config_roundtrips_through_dict():
    cfg = config_lib.resolve(ImageClassificationConfig, sets={"epochs": 3})
    again = config_lib.resolve(ImageClassificationConfig, base=dataclasses.asdict(cfg))
    assert again == cfg


def test_default_backbone_options_do_not_follow_another_backbone():
    cfg = config_lib.resolve(ImageClassificationConfig, flags={"backbone": "resnet18"})
    assert cfg.backbone_options == {}
    cfg = config_lib.resolve(ImageClassificationConfig)
    assert cfg.backbone_options == {"batch_norm": True}
    cfg = config_lib.resolve(ImageClassificationConfig, sets={"backbone_options": {"width": 0.5}},
                             flags={"backbone": "resnet18"})
    assert cfg.backbone_options == {"width": 0.5}


def test_tasks_are_found_through_entry_points_and_imported_only_when_asked():
    """The pipeline never imports the task packages by name: `cnn_tasks.tasks` entry points
    (setup.cfg) list them, and a task's package is imported when that task is asked for."""
    import subprocess
    import sys

    script = ("import sys\n"
              "from pipelines import cli, workflow, evaluation, reports\n"
              "from pipelines.tasks import TASKS, get_task, task_names\n"
              "names = task_names()\n"
              "assert {'image-classification', 'text-classification', 'captioning',\n"
              "        'medical-segmentation'} <= set(names), names\n"
              "assert not [m for m in sys.modules if m == 'tasks' or m.startswith('tasks.')]\n"
              "assert get_task('captioning').name == 'captioning'\n"
              "assert 'captioning' in TASKS and 'text-classification' not in TASKS\n"
              "from pipelines.errors import UserError\n"
              "try:\n"
              "    get_task('captioninng')\n"
              "except UserError as error:\n"
              "    assert \"Did you mean 'captioning'\" in str(error), error\n"
              "    assert 'Known: ' + ', '.join(sorted(names)) in str(error), error\n"
              "else:\n"
              "    raise AssertionError('an unknown task was accepted')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_reports_mark_the_better_side_by_the_tasks_declared_direction():
    from pipelines.evaluation import Evaluation
    from pipelines.reports import render_html
    from pipelines.tasks import get_task

    assert get_task("medical-segmentation").lower_is_better == ("hd95",)
    document = {"split": "test", "n_samples": 3, "metrics": {"dice": 0.8, "hd95": 2.0},
                "baseline": {"name": "atlas", "metrics": {"dice": 0.7, "hd95": 3.0}}}
    html = render_html(document, Evaluation(document["metrics"], 3, lower_is_better=("hd95",)), "t", [])
    assert html.count("class='better'") == 2  # higher Dice and lower HD95
    html = render_html(document, Evaluation(document["metrics"], 3), "t", [])
    assert html.count("class='better'") == 1  # undeclared: higher wins, so HD95 is not marked


def test_the_readme_task_table_lists_every_installed_task():
    """The README's task table is a list of tasks too: it must name exactly the installed ones."""
    from pathlib import Path

    from pipelines.tasks import task_names

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## The tasks", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")]
    assert sorted(rows) == sorted(task_names())
