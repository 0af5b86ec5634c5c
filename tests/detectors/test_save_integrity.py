"""Save files: every load restores exactly or raises CorruptSaveError; saving is atomic (issue 10, item 7)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsernn.detectors import (AnomalyLikelihood, CorruptSaveError, SeasonalSurprise, StreamScorer, load_detector,
                                 load_stream, save_detector)
from sparsernn.detectors.stream import persistence


@pytest.fixture
def saved(fitted, series, tmp_path) -> tuple[Path, AnomalyLikelihood]:
    stream = AnomalyLikelihood(SeasonalSurprise(StreamScorer(fitted, normalizer_halflife=30.0), period=40),
                               learning_period=20, estimation_samples=20)
    stream.process(np.stack([series[0][:120]] * 2, axis=1), ["a", "b"])
    path = tmp_path / "stream.pt"
    stream.save(path)
    return path, stream


def rewrite(path: Path, change) -> None:
    """Apply ``change(payload)`` to a saved file and write it back with a matching checksum."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    payload["sha256"] = persistence._checksum(payload["config"], payload["tensors"])
    torch.save(payload, path)


def assert_corrupt(path: Path, *words: str) -> None:
    with pytest.raises(CorruptSaveError) as info:
        load_stream(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_a_sound_file_restores_exactly(saved, series):
    path, stream = saved
    loaded = load_stream(path)
    block = np.stack([series[0][120:200]] * 2, axis=1)
    np.testing.assert_array_equal(loaded.process(block, ["a", "b"]), stream.process(block, ["a", "b"]))


@pytest.mark.parametrize("cut", [0, 1, 100, 0.5, -1])
def test_an_empty_or_truncated_file_is_corrupt(saved, cut):
    path, _ = saved
    data = path.read_bytes()
    keep = int(len(data) * cut) if isinstance(cut, float) else (len(data) + cut if cut < 0 else cut)
    path.write_bytes(data[:keep])
    assert_corrupt(path, "not a readable")


def test_not_a_torch_file_is_corrupt(saved):
    path, _ = saved
    path.write_text("timestamp,value\n")
    assert_corrupt(path, "not a readable")
    with pytest.raises(CorruptSaveError):
        load_detector(path)


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7, 0.9])
def test_flipped_bytes_are_detected(saved, where):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptSaveError) as info:
        load_stream(path)
    assert str(path) in str(info.value)


def test_a_changed_tensor_fails_the_checksum(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["tensors"]["scorer.state"][0, 0] += 1.0
    torch.save(payload, path)
    assert_corrupt(path, "checksum")


def test_bad_json_is_corrupt(saved):
    path, _ = saved
    rewrite(path, lambda p: p.update(config=p["config"][:-5]))
    assert_corrupt(path, "JSON")


def test_a_missing_tensor_is_named(saved):
    path, _ = saved
    rewrite(path, lambda p: p["tensors"].pop("scorer.forecast_var"))
    assert_corrupt(path, "scorer.forecast_var", "missing")


def test_a_missing_config_entry_is_corrupt(saved):
    path, _ = saved

    def drop(payload):
        config = json.loads(payload["config"])
        del config["scorer"]["stream_ids"]
        payload["config"] = json.dumps(config)

    rewrite(path, drop)
    assert_corrupt(path, "stream_ids")


def test_a_state_of_the_wrong_width_is_corrupt(saved):
    path, _ = saved
    rewrite(path, lambda p: p["tensors"].update({"scorer.state": p["tensors"]["scorer.state"][:, :-1].clone()}))
    assert_corrupt(path, "scorer.state", "shape")


def test_a_wrapper_array_of_the_wrong_length_is_corrupt(saved):
    path, _ = saved
    rewrite(path, lambda p: p["tensors"].update({"wrapper1.seen": p["tensors"]["wrapper1.seen"][:1].clone()}))
    assert_corrupt(path, "wrapper1.seen", "shape")


@pytest.mark.parametrize("name", ["scorer.state", "scorer.norm_var", "detector.scale_", "model.head.weight"])
def test_a_nan_state_is_corrupt(saved, name):
    path, _ = saved

    def poison(payload):
        tensor = payload["tensors"][name].clone()
        tensor.view(-1)[0] = float("nan")
        payload["tensors"][name] = tensor

    rewrite(path, poison)
    assert_corrupt(path, name, "NaN")


def test_save_is_atomic_a_failing_write_keeps_the_old_file(saved, monkeypatch):
    path, stream = saved
    before = path.read_bytes()
    real_save = torch.save

    def half_then_fail(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.seek(0)
        file.truncate(len(before) // 2)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(persistence.torch, "save", half_then_fail)
    stream.learn_one(0.5, stream="a")
    with pytest.raises(OSError, match="simulated"):
        stream.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left
    monkeypatch.undo()
    load_stream(path)


def test_detector_files_are_checked_too(fitted, tmp_path):
    path = tmp_path / "detector.pt"
    save_detector(fitted, path)
    np.testing.assert_array_equal(load_detector(path).decision_scores_, fitted.decision_scores_)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptSaveError, match="detector.pt"):
        load_detector(path)
