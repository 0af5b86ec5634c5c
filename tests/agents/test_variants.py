"""The one table of named variants that scripts/bench_rl.py and scripts/rl_quality.py share."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from stable_baselines3.common.env_util import make_vec_env

import sparsernn.envs  # noqa: F401
from sparsernn.agents import ALGOS
from sparsernn.agents.config import parse_policy_kwargs
from sparsernn.agents.variants import RECURRENT_KEYS, VARIANTS, variant_policy_kwargs

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
BASE = {"hidden_size": 32, "activation_fn": "relu", "enable_critic_lstm": True, "net_arch": {"pi": [16], "vf": [16]}}


def test_every_name_either_script_offered_is_in_the_table():
    issue12 = {"gru-router0.5", "gru-router0.25", "gru-router0.1-both", "gru-router0.1-both-anneal",
               "gru-router0.1-hidden", "gru-router0.1-hidden-anneal", "gru-router0.1-hidden-gumbel",
               "gru-router0.1-hidden-balance"}
    issue13 = {"gru-event-default", "gru-rhythm-default"} | {
        f"gru-event-r0.3-{mode}{suffix}" for mode in ("setpoint", "ceiling") for suffix in ("", "-open0.25")}
    assert set(VARIANTS) == {"stock-lstm", "ppo-mlp", "lstm", "gru", "gru-core", "gru-d0.1", "gru-router0.1",
                             "gru-event", "gru-event0.5", "gru-rhythm0.5", "gru-event0.1", "gru-rhythm0.1",
                             "gru-event-r0.3", "stock-policy-sparse-ppo"} | issue12 | issue13 | {
                                 "lstm-stockinit", "lstm-layerinit", "lstm-stock-ppo", "lstm-stockinit-stock-ppo"}


def test_policy_kwargs_follow_the_variants_policy():
    base = dict(BASE)
    assert variant_policy_kwargs("ppo-mlp", base) == {"activation_fn": "relu", "net_arch": {"pi": [16], "vf": [16]}}
    assert not set(variant_policy_kwargs("ppo-mlp", base)) & set(RECURRENT_KEYS)
    stock = variant_policy_kwargs("stock-lstm", base)
    assert stock["lstm_hidden_size"] == 32 and "hidden_size" not in stock
    assert variant_policy_kwargs("stock-lstm", {})["lstm_hidden_size"] == 64
    event = variant_policy_kwargs("gru-event", base)
    assert event == {**BASE, "cell": "gru", "update_gate": "event", "target_update_rate": 0.5}
    assert variant_policy_kwargs("gru-event-default", base) == {**BASE, "cell": "gru", "update_gate": "event"}
    screened = variant_policy_kwargs("gru-event-r0.3-setpoint-open0.25", base)
    assert (screened["update_rate_mode"], screened["always_open_fraction"]) == ("set_point", 0.25)
    assert base == BASE, "the config's policy_kwargs were modified"


def test_unknown_variant_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="'gru-nope'"):
        variant_policy_kwargs("gru-nope", {})


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_builds_its_model(name):
    variant = VARIANTS[name]
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)
    model = ALGOS[variant.algo](variant.policy, env, n_steps=8, batch_size=16, device="cpu", seed=0,
                                policy_kwargs=parse_policy_kwargs(variant_policy_kwargs(name, BASE)),
                                **variant.ppo_kwargs)
    assert model.policy_class is type(model).policy_aliases[variant.policy]
    for key, value in variant.policy_kwargs.items():
        assert model.policy_kwargs[key] == value
    for key, value in variant.ppo_kwargs.items():
        assert getattr(model, key) == value
    env.close()


def test_rl_quality_runs_a_variant_of_the_table(tmp_path):
    out = tmp_path / "quality.jsonl"
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "rl_quality.py"), "--variants", "stock-lstm", "gru-event", "--seeds", "0",
         "--steps", "256", "--eval-episodes", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(row["variant"], row["seed"], row["steps"]) for row in rows] == [("stock-lstm", 0, 256),
                                                                          ("gru-event", 0, 256)]
