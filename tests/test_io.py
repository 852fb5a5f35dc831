import pickle

import pytest
import torch

from conftest import make_cnn
from funlearn import CheckpointError, functional, load_params, save_params
from funlearn.io import atomic_write_bytes, load_tensors, save_tensors, state_to_tensors, tensors_to_state
from funlearn.transforms import adam, chain, sgd


def test_params_roundtrip_with_metadata(tmp_path):
    model, params, buffers = functional(make_cnn())
    path = tmp_path / "m.safetensors"
    save_params(path, params, buffers, {"epoch": 3, "note": "x"})
    p2, b2, meta = load_params(path, model)
    assert meta == {"epoch": 3, "note": "x"}
    assert all(torch.equal(p2[k], params[k]) for k in params)
    assert all(torch.equal(b2[k], buffers[k]) for k in buffers)


def test_missing_key_wrong_shape_and_dtype_are_named(tmp_path):
    model, params, buffers = functional(make_cnn())
    path = tmp_path / "bad.safetensors"
    broken = dict(params)
    del broken["9.bias"]
    broken["9.weight"] = torch.zeros(3, 3)
    broken["4.weight"] = params["4.weight"].double()
    save_params(path, broken, buffers)
    with pytest.raises(CheckpointError) as err:
        load_params(path, model)
    msg = str(err.value)
    assert "missing params ['9.bias']" in msg
    assert "'9.weight' has shape (3, 3), expected (10, 64)" in msg
    assert "'4.weight' has dtype torch.float64" in msg


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_object_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"w": Evil()}, f)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_tensors(path)
    torch.save({"0.weight": torch.zeros(1), "obj": Evil()}, tmp_path / "evil2.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_tensors(tmp_path / "evil2.pt")


def test_plain_state_dict_is_split_by_the_model(tmp_path):
    net = make_cnn()
    model, params, buffers = functional(net)
    torch.save({"rmodel": net.state_dict()}, tmp_path / "sd.pth")
    p2, b2, _ = load_params(tmp_path / "sd.pth", model)
    assert set(p2) == set(params) and set(b2) == set(buffers)
    assert torch.equal(b2["1.running_var"], buffers["1.running_var"])


def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"a": torch.ones(3)})
    import os

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"garbage that must not land")
    monkeypatch.undo()
    tensors, _ = load_tensors(path)
    assert torch.equal(tensors["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # temp file cleaned up


def test_truncated_safetensors_is_refused(tmp_path):
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"a": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_tensors(path)


def test_transformation_state_roundtrip(tmp_path):
    params = {"w": torch.randn(3, 2), "b": torch.zeros(2)}
    tx = chain(sgd(0.1, 0.9), adam(1e-3))
    grads = {"w": torch.ones(3, 2), "b": torch.ones(2)}
    _, state = tx.update(grads, tx.init(params), params)
    save_tensors(tmp_path / "s.safetensors", state_to_tensors(state))
    flat, _ = load_tensors(tmp_path / "s.safetensors")
    back = tensors_to_state(tx.init(params), flat)
    u1, _ = tx.update(grads, state, params)
    u2, _ = tx.update(grads, back, params)
    assert all(torch.equal(u1[k], u2[k]) for k in u1)
    with pytest.raises(CheckpointError, match="missing"):
        tensors_to_state(tx.init(params), {k: v for k, v in flat.items() if "count" not in k})
