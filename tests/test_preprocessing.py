"""Each task's typed preprocessing record: JSON round trip, assets, and old or broken files."""

import dataclasses
import json

import pytest

from pipelines import runs
from pipelines.errors import UserError
from pipelines.preprocessing import INFO_FILE, Preprocessing
from pipelines.tokenizer import VOCABULARY_FILE, VocabularyPreprocessing


@dataclasses.dataclass(kw_only=True)
class Sized(Preprocessing):
    image_size: int
    channels: int = 3


def test_round_trip_through_assets(tmp_path):
    record = Sized(image_size=32, notes=["resized"])
    record.save_assets(tmp_path, runs.write_json)
    assert json.loads((tmp_path / INFO_FILE).read_text()) == {"notes": ["resized"], "image_size": 32,
                                                             "channels": 3}
    assert Sized.load_assets(tmp_path) == record


def test_unknown_keys_are_ignored_and_missing_ones_named(tmp_path):
    assert Sized.from_json({"image_size": 8, "augment_flip": True}) == Sized(image_size=8)
    with pytest.raises(UserError, match="missing image_size"):
        Sized.from_json({"channels": 1}, source="run/assets/info.json")
    with pytest.raises(UserError, match="expected a JSON object"):
        Sized.from_json(["image_size"])


def test_a_vocabulary_lives_in_its_own_file(tmp_path):
    @dataclasses.dataclass(kw_only=True)
    class Texts(VocabularyPreprocessing):
        max_length: int

    record = Texts(vocabulary=["[PAD]", "[UNK]", "free", "prize"], max_length=12)
    record.save_assets(tmp_path, runs.write_json)
    described = json.loads((tmp_path / INFO_FILE).read_text())
    assert "vocabulary" not in described and described["vocabulary_size"] == 4
    assert (tmp_path / VOCABULARY_FILE).read_text().split() == record.vocabulary
    assert Texts.load_assets(tmp_path) == record


def test_every_installed_task_declares_its_record():
    from pipelines.tasks import get_task, task_names

    for name in task_names():
        record = get_task(name).Preprocessing
        assert dataclasses.is_dataclass(record) and issubclass(record, Preprocessing), name
