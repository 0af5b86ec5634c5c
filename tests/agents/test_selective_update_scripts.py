"""scripts/reproduce_selective_update.py and rl_quality's env_kwargs runs (issue 13, item 2)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
REPRODUCE = SCRIPTS / "reproduce_selective_update.py"


def run(*args, script=REPRODUCE):
    done = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_gradient_reaching_the_cue_is_exact_through_a_closed_gap_and_vanishes_without_the_gate(tmp_path):
    run("gradient", "--delays", 5, 40, "--seeds", 0, "--out", tmp_path)
    rows = json.loads((tmp_path / "gradient.json").read_text())["rows"]
    norms = {(r["layer"], r["delay"]): r["grad_norm_mean"] for r in rows}
    for layer in ("event, initial rate 0.1", "event, initial rate 0.3"):
        # every neuron closed after the cue: h_d = h_0 exactly, so the gradient does not depend on d
        assert norms[(layer, 5)] == norms[(layer, 40)] > 0
    assert norms[("gru (dense)", 40)] < 1e-3 * norms[("gru (dense)", 5)]
    assert (tmp_path / "gradient.png").stat().st_size > 0


def test_trace_of_a_fresh_event_layer_opens_at_cue_and_query_and_stays_closed_in_silence(tmp_path):
    run("trace", "--gap", 30, "--out", tmp_path)
    traces = json.loads((tmp_path / "trace.json").read_text())["traces"]
    assert sorted(traces) == ["0", "1", "2", "3"]
    for trace in traces.values():
        rates = trace["update_rate"]
        assert len(rates) == 32 and rates[0] > 0 and rates[-1] > 0 and max(rates[1:-1]) == 0.0


def test_success_part_replots_recorded_rows_by_gap_and_counts_a_repeated_run_once(tmp_path):
    rows = [
        {"env_id": "sparsernn/CueMemory-v0", "variant": "gru", "seed": 0, "success_rate": 0.2},  # gap 50
        {"env_id": "sparsernn/CueMemory-v0", "env_kwargs": {"gap": 200}, "variant": "gru", "seed": 0,
         "success_rate": 0.3},
        {"env_id": "sparsernn/CueMemory-v0", "env_kwargs": {"gap": 200}, "variant": "gru", "seed": 0,
         "success_rate": 0.25},  # the same run again: the last row counts
        {"env_id": "sparsernn/CueMemoryLong-v0", "variant": "su", "seed": 1, "success_rate": 1.0},  # gap 1000
        # taught at gap 200, scored at 5000: its own series, at the gap it was scored at
        {"env_id": "sparsernn/CopyRecallLong-v0", "env_kwargs": {"gap": 200}, "eval_env_kwargs": {"gap": 5000},
         "variant": "su", "seed": 0, "success_rate": 0.9},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"steps": 10, "seconds": 1.0, **row}) + "\n" for row in rows))
    run("success", "--results", path, "--out", tmp_path)
    success = json.loads((tmp_path / "success.json").read_text())["success"]
    assert {variant: {gap: [r["success"] for r in runs] for gap, runs in gaps.items()}
            for variant, gaps in success.items()} == {"gru": {"50": [0.2], "200": [0.25]}, "su": {"1000": [1.0]},
                                                      "su (taught at gap 200)": {"5000": [0.9]}}
    assert (tmp_path / "success.png").stat().st_size > 0


def test_rl_quality_keeps_runs_at_different_env_kwargs_apart(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("env_id: sparsernn/CueMemory-v0\nn_envs: 2\npolicy_kwargs: {hidden_size: 8}\n"
                      "ppo_kwargs: {n_steps: 16, batch_size: 32, n_epochs: 1}\n")
    out = tmp_path / "rows.jsonl"
    common = ["--config", config, "--variants", "gru", "--seeds", 0, "--steps", 32, "--eval-episodes", 1,
              "--out", out]
    for gap in (3, 5, 3):  # the second gap-3 call finds its run done
        run(*common, "--env-kwargs", json.dumps({"gap": gap}), script=SCRIPTS / "rl_quality.py")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["env_kwargs"] for row in rows] == [{"gap": 3}, {"gap": 5}]
    # evaluated at another gap: a run of its own, its row says where it was scored
    run(*common, "--env-kwargs", json.dumps({"gap": 3}), "--eval-env-kwargs", json.dumps({"gap": 7}),
        script=SCRIPTS / "rl_quality.py")
    row = json.loads(out.read_text().splitlines()[-1])
    assert (row["env_kwargs"], row["eval_env_kwargs"]) == ({"gap": 3}, {"gap": 7})


@pytest.mark.parametrize("name", ["gru-event-r0.3"])
def test_issue13_variant_is_an_event_gate_without_a_rate_target(name):
    from sparsernn.agents.variants import VARIANTS

    options = VARIANTS[name].policy_kwargs
    assert options["update_gate"] == "event" and options["initial_update_rate"] == 0.3
    assert "target_update_rate" not in options


def test_success_run_trains_the_missing_gaps_at_the_configs_env(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("env_id: sparsernn/CueMemory-v0\nn_envs: 2\npolicy_kwargs: {hidden_size: 8}\n"
                      "ppo_kwargs: {n_steps: 16, batch_size: 32, n_epochs: 1}\n")
    out = tmp_path / "rows.jsonl"
    run("success", "--run", "--config", config, "--gaps", 3, 50, "--variants", "gru", "--seeds", 0, "--steps", 32,
        "--eval-episodes", 1, "--results", out, "--out", tmp_path)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # the registered gap (50) runs without env_kwargs, so its row is the same run as rl_quality's plain one
    assert [(row["env_id"], row.get("env_kwargs")) for row in rows] == [("sparsernn/CueMemory-v0", {"gap": 3}),
                                                                        ("sparsernn/CueMemory-v0", None)]
    assert set(json.loads((tmp_path / "success.json").read_text())["success"]["gru"]) == {"3", "50"}


def _diagnose_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("diagnose_copy_recall", SCRIPTS / "diagnose_copy_recall.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_copy_recall_diagnosis_answers_as_the_policy_does_in_the_real_env(tmp_path):
    """The batched pass over every sequence gives the answers ``predict`` gives stepping the env itself."""
    import gymnasium as gym
    import numpy as np

    import sparsernn.envs  # noqa: F401  (registers the envs)
    from sparsernn.agents import SparseRecurrentPPO

    gap = 6
    env = gym.make("sparsernn/CopyRecallLong-v0", gap=gap)
    model = SparseRecurrentPPO("SparseRecurrentPolicy", env, seed=3, device="cpu",
                               policy_kwargs=dict(hidden_size=16, update_gate="event", initial_update_rate=0.3))
    path = tmp_path / "model.zip"
    model.save(path)
    payload = _diagnose_module().diagnose(str(path), gap, 2, 4)
    answers = {tuple(r["sequence"]): tuple(r["answers"]) for r in payload["sequences"]}
    assert len(answers) == 16
    seen = {}
    for seed in range(200):  # the symbols are read from the observations, as the policy sees them
        obs, _ = env.reset(seed=seed)
        state, start, symbols, acted = None, np.ones(1, bool), [], []
        for t in range(2 + gap + 2):
            if t < 2:
                symbols.append(int(obs[:4].argmax()))
            action, state = model.predict(obs[None], state=state, episode_start=start, deterministic=True)
            start = np.zeros(1, bool)
            if t >= 2 + gap:
                acted.append(int(action[0]))
            obs, *_ = env.step(int(action[0]))
        seen[tuple(symbols)] = tuple(acted)
    assert len(seen) >= 12
    assert all(answers[sequence] == acted for sequence, acted in seen.items())
    assert len(set(answers.values())) > 1  # a policy that answers alike everywhere would not test the layout
    wrong = [s for s, a in answers.items() if s != a]
    assert payload["expected_success"] == 1 - len(wrong) / 16
    assert sorted(tuple(r["sequence"]) for r in payload["failed"]) == sorted(wrong)
