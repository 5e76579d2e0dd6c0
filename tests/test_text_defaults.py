"""Text defaults that follow the training split's size (issue 19): epochs, embedding, word dropout."""

import pytest

from pipelines.data import Dataset
from pipelines.tasks import get_task
from pipelines.workflow import resolve_config
from tasks.text_classification.task import epochs_for, small_data_options


def _train(n):
    return Dataset(x=["a text"] * n, y=[i % 2 for i in range(n)], spec="test", description="test",
                   info={"class_names": ["a", "b"]})


@pytest.mark.parametrize("n, epochs", [(4013, 10), (4907, 10), (2000, 20), (1003, 39), (1000, 40),
                                       (60, 100)])
def test_epochs_buy_about_800_steps(n, epochs):
    assert epochs_for(n, 50) == epochs


def test_small_splits_get_smaller_embeddings_and_more_word_dropout():
    assert small_data_options(4000) == {} and small_data_options(10_000) == {}
    assert small_data_options(1000) == {"embedding_dim": 128, "word_dropout": 0.25}
    assert small_data_options(500) == small_data_options(1000)
    middle = small_data_options(2000)
    assert 128 < middle["embedding_dim"] < 300 and 0.1 < middle["word_dropout"] < 0.25


def test_fit_config_fills_only_what_the_user_left_to_the_data():
    task = get_task("text-classification")
    config = task.fit_config(resolve_config(task), _train(1000))
    assert config.epochs == 40 and config.early_stopping_patience == 10
    full = task.fit_config(resolve_config(task), _train(5000))
    assert full.epochs == 10 and full.early_stopping_patience == 0 and full.backbone_options == {}
    assert config.backbone_options == {"embedding_dim": 128, "word_dropout": 0.25}
    mine = resolve_config(task, sets={"epochs": 3, "backbone_options": {"embedding_dim": 64}})
    mine = task.fit_config(mine, _train(1000))
    assert mine.epochs == 3 and mine.backbone_options == {"embedding_dim": 64, "word_dropout": 0.25}
    assert mine.early_stopping_patience == 0  # the user chose the epochs: no early stop added
    again = task.fit_config(mine, _train(5000))  # idempotent: a resumed run keeps what it chose
    assert again.epochs == 3 and again.backbone_options == mine.backbone_options
    other = task.fit_config(resolve_config(task, flags={"backbone": "dilated_cnn"}), _train(1000))
    assert other.backbone_options == {}  # the size rule is tuned for text_cnn only
