"""The retrain reference cache: trained once per key, retrained when the key changes, validated on load."""

from __future__ import annotations

import pytest
import torch

import funlearn as fl

FIELDS = {
    "dataset": "digits",
    "scenario": "random:0.1",
    "seed": 0,
    "recipe": {"model": "mlp", "epochs": 3, "lr": 0.1},
}


class CountingTrainer:
    """A train_fn that records how often it runs and returns distinct params each time."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        self.calls += 1
        return {"w": torch.full((2, 3), float(self.calls)), "b": torch.zeros(2)}, {"bn.mean": torch.ones(3)}


def test_same_key_trains_once_and_loads_the_cached_params(tmp_path):
    train = CountingTrainer()
    first = fl.retrained_reference(tmp_path, FIELDS, train)
    assert train.calls == 1 and not first.cached and first.path.exists()
    assert first.path.name.startswith("retrain-digits-random_0.1-seed0-") and first.key in first.path.name
    reordered = dict(reversed(list(FIELDS.items())))  # dict order does not change the key
    second = fl.retrained_reference(tmp_path, reordered, train)
    assert train.calls == 1 and second.cached
    assert torch.equal(second.params["w"], first.params["w"]) and torch.equal(
        second.buffers["bn.mean"], torch.ones(3)
    )
    assert second.time_s == first.time_s  # the original training time travels with the params
    assert second.key == first.key == fl.retrain_key(FIELDS)


@pytest.mark.parametrize(
    "change",
    [
        {"dataset": "fashion_mnist"},
        {"scenario": "class:3"},
        {"seed": 1},
        {"recipe": {"model": "mlp", "epochs": 4, "lr": 0.1}},
    ],
)
def test_a_changed_key_retrains(tmp_path, change):
    train = CountingTrainer()
    fl.retrained_reference(tmp_path, FIELDS, train)
    changed = fl.retrained_reference(tmp_path, {**FIELDS, **change}, train)
    assert train.calls == 2 and not changed.cached
    assert float(changed.params["w"][0, 0]) == 2.0
    assert (
        fl.retrained_reference(tmp_path, FIELDS, train).cached and train.calls == 2
    )  # the first is still there


def test_a_split_scenario_keys_on_its_forget_indices():
    def split(forget: list[int]) -> fl.Split:
        retain = sorted(set(range(10)) - set(forget))
        return fl.Split(torch.tensor(retain), torch.tensor(forget), description="two samples")

    same, other = (
        fl.retrain_key({**FIELDS, "scenario": split([1, 2])}),
        fl.retrain_key({**FIELDS, "scenario": split([1, 3])}),
    )
    assert same != other  # same description, different forget set
    assert same == fl.retrain_key({**FIELDS, "scenario": split([1, 2])})


def test_refresh_retrains_and_overwrites(tmp_path):
    train = CountingTrainer()
    fl.retrained_reference(tmp_path, FIELDS, train)
    again = fl.retrained_reference(tmp_path, FIELDS, train, refresh=True)
    assert train.calls == 2 and not again.cached
    assert float(fl.retrained_reference(tmp_path, FIELDS, train).params["w"][0, 0]) == 2.0


def test_cached_files_are_validated(tmp_path):
    train = CountingTrainer()
    made = fl.retrained_reference(tmp_path, FIELDS, train)
    wrong_shape = ({"w": torch.zeros(3, 3), "b": torch.zeros(2)}, {"bn.mean": torch.zeros(3)})
    with pytest.raises(fl.CheckpointError, match="shape.*refresh=True"):
        fl.retrained_reference(tmp_path, FIELDS, train, reference=wrong_shape)
    # a file whose stored key fields differ from its name (e.g. copied by hand) is refused
    other = fl.retrained_reference(tmp_path, {**FIELDS, "seed": 7}, train)
    made.path.write_bytes(other.path.read_bytes())
    with pytest.raises(fl.CheckpointError, match="refresh=True"):
        fl.retrained_reference(tmp_path, FIELDS, train)
    made.path.write_bytes(b"not a safetensors file")
    with pytest.raises(fl.CheckpointError, match=made.path.name):
        fl.retrained_reference(tmp_path, FIELDS, train)
    assert train.calls == 2


def test_bad_key_fields_and_train_results_fail_before_caching(tmp_path):
    train = CountingTrainer()
    with pytest.raises(ValueError, match="recipe"):
        fl.retrained_reference(tmp_path, {"dataset": "digits", "scenario": "random:0.1", "seed": 0}, train)
    with pytest.raises(ValueError, match="JSON"):
        fl.retrained_reference(tmp_path, {**FIELDS, "recipe": {"optimizer": object()}}, train)
    assert train.calls == 0
    with pytest.raises(TypeError, match=r"\(params, buffers\)"):
        fl.retrained_reference(tmp_path, FIELDS, lambda: {"w": torch.ones(1)})
    with pytest.raises(ValueError, match="NaN"):
        fl.retrained_reference(tmp_path, FIELDS, lambda: ({"w": torch.tensor([float("nan")])}, {}))
    assert not list(tmp_path.iterdir())
