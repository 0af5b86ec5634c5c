"""Smoke test of scripts/bench_rl.py's plumbing (rounds, medians, ratios, JSON), run as a user would."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsernn.benchmarking import interleaved_round

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_rl.py"


def test_bench_rl_writes_medians_and_per_round_ratios(tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "512", "--chunk", "256", "--repeats", "2", "--warmup", "64",
         "--variants", "stock-lstm", "gru", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["meta"]["repeats"] == 2 and data["meta"]["steps"] == 512 and data["meta"]["chunk"] == 256
    stock, gru = data["results"]
    assert [stock["variant"], gru["variant"]] == ["stock-lstm", "gru"]
    for result in (stock, gru):
        assert len(result["rounds_steps_per_s"]) == 2
        assert result["steps_per_s"] == statistics.median(result["rounds_steps_per_s"])
    assert gru["ratio_to_stock"] == gru["steps_per_s"] / stock["steps_per_s"]
    assert gru["round_ratios"] == [a / b for a, b in zip(gru["rounds_steps_per_s"], stock["rounds_steps_per_s"])]
    assert "x stock" in completed.stdout
    assert data["meta"]["device"] == "cpu" and data["meta"]["gpu"] is None


@pytest.mark.parametrize("option", ["--repeats", "--chunk"])
def test_bench_rl_rejects_zero_counts(option):
    completed = subprocess.run([sys.executable, str(SCRIPT), option, "0"], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 2
    assert option in completed.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU is present")
def test_bench_rl_refuses_cuda_without_a_gpu():
    completed = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda"], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 2
    assert "--device cuda" in completed.stderr and "no CUDA device" in completed.stderr


def test_interleaved_round_gives_every_model_its_steps_in_turns():
    turns = []

    class FakeModel:  # learns in whole rollouts of 96 steps, like SB3
        def __init__(self, name):
            self.name, self.num_timesteps = name, 0

        def learn(self, steps, reset_num_timesteps):
            assert reset_num_timesteps is False
            turns.append((self.name, steps))
            self.num_timesteps += -(-steps // 96) * 96

    speeds = interleaved_round({"a": FakeModel("a"), "b": FakeModel("b")}, steps=200, chunk=96)
    assert turns == [("a", 96), ("b", 96), ("a", 96), ("b", 96), ("a", 8), ("b", 8)]
    assert set(speeds) == {"a", "b"} and all(speed > 0 for speed in speeds.values())


def test_bench_rl_chunk_lengths_add_our_variants_only_with_that_chunk_length(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_rl", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    config = bench.load_config(bench.DEFAULT_CONFIG)
    model, env, _ = bench.build_variant("gru@chunk16", config, 0, 0)
    try:
        assert model.rollout_buffer.chunk_length == 16 and model.policy.lstm_actor.layer.cell == "gru"
    finally:
        env.close()
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "256", "--chunk", "256", "--repeats", "1", "--warmup", "0",
         "--variants", "stock-lstm", "gru", "--chunk-lengths", "16", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert [r["variant"] for r in json.loads(out.read_text())["results"]] == ["stock-lstm", "gru", "gru@chunk16"]
    refused = subprocess.run([sys.executable, str(SCRIPT), "--chunk-lengths", "0"], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "--chunk-lengths" in refused.stderr
