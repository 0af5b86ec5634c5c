"""The policy's layer options are the layer's (names and defaults read from its signature), and a
model saved when the policy took ``kernel=`` still loads."""
import inspect
import zipfile

import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.save_util import data_to_json, json_to_data

import sparsernn.envs  # noqa: F401
from sparsernn.agents import SparseRecurrentPPO
from sparsernn.agents.ppo import folderless_logger
from sparsernn.core import SparseRecurrent, layer_options
from sparsernn.policies import LAYER_OPTIONS

CALLERS_ARGUMENTS = {"self", "input_size", "hidden_size", "seed", "dtype", "device"}


def signature_defaults():
    """The layer's configuration options and defaults, read here independently of core.options."""
    parameters = inspect.signature(SparseRecurrent.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name not in CALLERS_ARGUMENTS}


def make_model(**policy_kwargs):
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)
    model = SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=8, batch_size=16, n_epochs=1, seed=0,
                               device="cpu", policy_kwargs={"hidden_size": 8, **policy_kwargs})
    model.set_logger(folderless_logger())
    return model


def test_policy_accepts_exactly_the_layers_options_with_its_defaults():
    assert LAYER_OPTIONS == signature_defaults()
    assert LAYER_OPTIONS["backend"] == "auto"
    policy = make_model().policy
    assert policy.layer_kwargs == signature_defaults()
    layer = policy.lstm_actor.layer
    for name in ("cell", "density_ih", "density_hh", "router_keep", "update_gate", "target_update_rate",
                 "update_rate_weight", "router_balance_weight", "backend"):
        assert getattr(layer, name) == signature_defaults()[name], name


def test_every_layer_option_has_a_documented_kind_and_help():
    options = layer_options()
    assert list(options) == list(signature_defaults())
    for option in options.values():
        assert option.kind in (bool, int, float, str) and option.help, option
        assert option.sequence == (option.name == "rhythm_periods"), option
        assert option.default is None or isinstance(option.default, option.kind), option
        if option.choices is not None:
            assert option.default in option.choices, option
    assert options["backend"].choices == ("auto", "reference", "compiled", "fused")
    assert "Rank of the router" in options["router_rank"].help


def test_an_option_the_layer_does_not_have_is_refused():
    with pytest.raises(TypeError, match="dropout"):
        make_model(dropout=0.1)


@pytest.mark.parametrize("kernel, backend, expected", [("fused", None, "fused"), ("fused", "reference", "fused"),
                                                       ("core", "reference", "reference")])
def test_a_model_saved_with_kernel_loads_with_a_deprecation_warning(tmp_path, kernel, backend, expected):
    """Models saved before ``backend`` was the one word store ``kernel`` in their policy kwargs:
    ``kernel="fused"`` ran the fused backend whatever ``backend`` said, ``"core"`` ran ``backend``."""
    model = make_model(**({} if backend is None else {"backend": backend}))
    path = tmp_path / "model.zip"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    data = json_to_data(files["data"].decode())
    data["policy_kwargs"] = {**data["policy_kwargs"], "kernel": kernel}  # as the old code saved it
    files["data"] = data_to_json(data).encode()
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(old, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    with pytest.warns(DeprecationWarning, match="kernel"):
        loaded = SparseRecurrentPPO.load(old, device="cpu")
    for layer in loaded.policy.recurrent_layers.values():
        assert layer.backend == expected
    assert "kernel" not in loaded.policy._get_constructor_parameters()
