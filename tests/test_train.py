"""The one training loop: learns, is deterministic, resumes exactly, refuses mixed runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lare2lib.detectors import registry, train
from lare2lib.models.tiny_detectors import ToyDetector, ToyImageDataset

FAST = dict(epochs=3, batch_size=8, eval_batch_size=16, early_stopping=0)


@pytest.fixture(autouse=True)
def _toy_kind(monkeypatch):
    monkeypatch.setitem(registry.DETECTOR_KINDS, "toy", "lare2lib.models.tiny_detectors:ToyDetector")


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return ToyDetector(**kwargs)


def _data():
    return ToyImageDataset(24, 16, seed=1), ToyImageDataset(12, 12, seed=2)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


class _Crash(RuntimeError):
    pass


class _CrashingDataset(ToyImageDataset):
    """Raises on the ``crash_at``-th item read, like a process killed mid-epoch."""

    def __init__(self, crash_at, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads, self.crash_at = 0, crash_at

    def __getitem__(self, index):
        self.reads += 1
        if self.reads == self.crash_at:
            raise _Crash("killed")
        return super().__getitem__(index)


def test_loss_and_probability_for_both_heads():
    labels = torch.tensor([0, 1])
    one = torch.tensor([-2.0, 3.0])
    two = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(train.fake_probability(one), torch.sigmoid(one))
    assert torch.allclose(train.fake_probability(two), two.softmax(1)[:, 1])
    assert train.detector_loss(one, labels) == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(one, labels.float()).item())
    assert train.detector_loss(two, labels) == pytest.approx(
        torch.nn.functional.cross_entropy(two, labels).item())


def test_epoch_indices_balanced_and_deterministic():
    labels = np.array([0] * 30 + [1] * 10)
    first = train.epoch_indices(labels, seed=3, epoch=0, balance=True)
    assert len(first) == 20 and (labels[first] == 1).sum() == 10
    assert np.array_equal(first, train.epoch_indices(labels, 3, 0, True))
    assert not np.array_equal(first, train.epoch_indices(labels, 3, 1, True))
    assert sorted(train.epoch_indices(labels, 3, 0, False)) == list(range(40))


@pytest.mark.parametrize("logits", [1, 2])
def test_fit_learns_and_saves_a_strictly_reloadable_detector(tmp_path, logits):
    train_set, val_set = _data()
    model = _model(logits=logits)
    result = train.fit(model, train_set, val_set, train.TrainConfig(**FAST, lr=3e-3), tmp_path,
                       progress=False)
    assert len(result.history) == 3 and result.steps == 3 * 4  # 16+16 balanced / 8
    assert result.best_metric >= 0.9
    assert result.best_metric == max(r["val_auc"] for r in result.history)
    reloaded = registry.load_detector(result.best_checkpoint)
    assert _same(_weights(reloaded), _weights(model))  # model holds the best weights
    meta = registry.read_detector_metadata(result.best_checkpoint)
    assert meta["kind"] == "toy" and meta["selected_on"] == "validation"


def test_fit_is_deterministic(tmp_path):
    config = train.TrainConfig(**FAST)
    a, b = _model(), _model()
    train.fit(a, *_data(), config, tmp_path / "a", progress=False)
    train.fit(b, *_data(), config, tmp_path / "b", progress=False)
    assert _same(_weights(a), _weights(b))
    c = _model()
    train.fit(c, *_data(), train.TrainConfig(**{**FAST, "seed": 1}), tmp_path / "c", progress=False)
    assert not _same(_weights(a), _weights(c))


def test_a_crashed_run_resumes_to_the_same_result(tmp_path):
    config = train.TrainConfig(**FAST, checkpoint_every=3, plateau_patience=0)
    reference = _model()
    train.fit(reference, *_data(), config, tmp_path / "ref", progress=False)

    _, val_set = _data()
    crashing = _CrashingDataset(16 * 2 + 21, 24, 16, seed=1)  # dies inside the second epoch
    with pytest.raises(_Crash):
        train.fit(_model(), crashing, val_set, config, tmp_path / "run", progress=False)
    state = json.loads((tmp_path / "run" / train.STATE_FILE).read_text())
    assert state["global_step"] == 6 and state["epoch"] == 1  # mid-epoch checkpoint published
    assert len(list((tmp_path / "run").glob("ckpt-*"))) == 1

    resumed = _model(seed=99)  # different init: everything must come from the checkpoint
    result = train.fit(resumed, *_data(), config, tmp_path / "run", progress=False)
    assert result.resumed_from == 6
    assert _same(_weights(resumed), _weights(reference))
    assert [r["lr"] for r in result.history] == [
        r["lr"] for r in json.loads((tmp_path / "ref" / train.STATE_FILE).read_text())["history"]]


def test_a_finished_run_is_not_recomputed(tmp_path):
    config = train.TrainConfig(**FAST)
    first = _model()
    done = train.fit(first, *_data(), config, tmp_path, progress=False)
    train_set = _CrashingDataset(1, 24, 16, seed=1)  # any read would raise
    again = _model(seed=5)
    result = train.fit(again, train_set, _data()[1], config, tmp_path, progress=False)
    assert result.resumed_from == done.steps and result.history == done.history
    assert _same(_weights(again), _weights(first))


def test_resuming_with_another_config_is_refused(tmp_path):
    train.fit(_model(), *_data(), train.TrainConfig(**FAST), tmp_path, progress=False)
    with pytest.raises(train.TrainingError, match="another config"):
        train.fit(_model(), *_data(), train.TrainConfig(**{**FAST, "lr": 1e-3}), tmp_path,
                  progress=False)


def test_early_stopping_and_plateau(tmp_path):
    train_set, _ = _data()
    flat = ToyImageDataset(8, 8, seed=3)
    flat.labels = flat.labels[torch.randperm(16, generator=torch.Generator().manual_seed(0))]
    config = train.TrainConfig(epochs=12, batch_size=8, early_stopping=2, plateau_patience=0,
                               lr=1e-3, monitor="acc")
    result = train.fit(_model(), train_set, flat, config, tmp_path, progress=False)
    lrs = [r["lr"] for r in result.history]
    assert lrs == sorted(lrs, reverse=True) and min(lrs) < 1e-3
    if result.stopped_early:
        assert len(result.history) < 12


def test_select_on_test_reproduces_the_released_protocol(tmp_path):
    train_set, val_set = _data()
    with pytest.raises(ValueError, match="test_set"):
        train.fit(_model(), train_set, val_set, train.TrainConfig(**FAST, select_on_test=True),
                  tmp_path, progress=False)
    result = train.fit(_model(), train_set, val_set, train.TrainConfig(**FAST, select_on_test=True),
                       tmp_path, test_set=ToyImageDataset(10, 10, seed=4), progress=False)
    assert "test_auc" in result.history[0] and "val_auc" not in result.history[0]
    assert registry.read_detector_metadata(result.best_checkpoint)["selected_on"] == "test"


def test_batch_of_one_and_max_steps(tmp_path):
    config = train.TrainConfig(epochs=2, batch_size=1, max_steps=5, early_stopping=0)
    result = train.fit(_model(), *_data(), config, tmp_path, progress=False)
    assert result.steps == 5 and len(result.history) == 1


def test_predict_keeps_dataset_order():
    model = _model().eval()
    _, val_set = _data()
    scores, labels = train.predict(model, val_set, batch_size=5, progress=False)
    direct = train.fake_probability(model({"image": val_set.images})).detach().numpy()
    assert np.allclose(scores, direct, atol=1e-6) and np.array_equal(labels, val_set.labels.numpy())


def test_one_class_training_set_is_refused(tmp_path):
    with pytest.raises(ValueError, match="both classes"):
        train.fit(_model(), ToyImageDataset(8, 0), ToyImageDataset(4, 4), train.TrainConfig(**FAST),
                  tmp_path, progress=False)


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match="monitor"):
        train.TrainConfig(monitor="loss")
    with pytest.raises(ValueError):
        train.TrainConfig(batch_size=0)
