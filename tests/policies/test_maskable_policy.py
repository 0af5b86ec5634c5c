"""MaskableSparseRecurrentPolicy: the masked heads against sb3-contrib's maskable distributions."""
import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution
from sb3_contrib.common.recurrent.type_aliases import RNNStates

from sparsernn.policies.maskable import action_mask_dims
from sparsernn.policies import MaskableSparseRecurrentPolicy, SparseRecurrentPolicy
from sparsernn.policies.action_heads import log_prob_and_entropy, sample_actions

OBS = spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = {"discrete": spaces.Discrete(5), "multidiscrete": spaces.MultiDiscrete([3, 2, 4]),
           "multibinary": spaces.MultiBinary(3)}
N = 64


def make_policy(space_name, **kwargs):
    torch.manual_seed(0)
    kwargs = {"hidden_size": 8, "net_arch": [], "seed": 0, **kwargs}
    return MaskableSparseRecurrentPolicy(OBS, ACTIONS[space_name], lambda _: 1e-3, **kwargs)


def random_masks(space, n, generator):
    """Masks with at least one allowed choice in every sub-space (and some fully allowed rows)."""
    dims = [space.n] if isinstance(space, spaces.Discrete) else \
        list(space.nvec) if isinstance(space, spaces.MultiDiscrete) else [2] * space.n
    parts = []
    for d in dims:
        part = torch.rand(n, d, generator=generator) < 0.5
        part[torch.arange(n), torch.randint(d, (n,), generator=generator)] = True
        parts.append(part)
    masks = torch.cat(parts, dim=1)
    masks[:4] = True
    return masks


def allowed(space, actions, masks):
    """Whether each row's action is allowed by its masks."""
    actions = actions.reshape(len(actions), -1).long()
    dims = [space.n] if isinstance(space, spaces.Discrete) else \
        list(space.nvec) if isinstance(space, spaces.MultiDiscrete) else [2] * space.n
    offsets = np.cumsum([0] + dims[:-1])
    columns = torch.as_tensor(offsets)[None, :] + actions
    return masks.gather(1, columns).all(1)


@pytest.mark.parametrize("space_name", list(ACTIONS))
def test_log_prob_entropy_and_gradients_equal_sb3_contrib_maskable_distribution(space_name):
    """Same logits, same masks: our heads and sb3-contrib's MaskableDistribution (as MaskablePPO uses it)
    give the same log-probabilities, entropies and gradients."""
    policy = make_policy(space_name).double()
    space = ACTIONS[space_name]
    generator = torch.Generator().manual_seed(1)
    latent = torch.randn(N, policy.mlp_extractor.latent_dim_pi, dtype=torch.float64, requires_grad=True,
                         generator=generator)
    masks = random_masks(space, N, generator)
    reference = policy._get_action_dist_from_latent(latent)
    reference.apply_masking(masks)
    with torch.no_grad():
        actions = reference.sample()
    weights = torch.randn(2, N, dtype=torch.float64, generator=generator)

    def grads(log_prob, entropy):
        loss = (weights[0] * log_prob).sum() + (weights[1] * entropy).sum()
        return torch.autograd.grad(loss, [latent, *policy.action_net.parameters()])

    expected = reference.log_prob(actions), reference.entropy()
    got = log_prob_and_entropy(policy, latent, actions, masks=masks)
    for name, g, e in zip(("log_prob", "entropy"), got, expected):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")
    for g, e in zip(grads(*got), grads(*expected)):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    assert (got[1][:4] > got[1][4:].min()).all()  # unmasked rows keep their full entropy


def test_masked_entropy_and_log_prob_on_known_logits():
    """A check by hand: logits 0 everywhere, two of five allowed -> log(1/2) and entropy log 2."""
    policy = make_policy("discrete")
    with torch.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.bias.zero_()
    latent = torch.zeros(1, policy.mlp_extractor.latent_dim_pi)
    masks = torch.tensor([[False, True, False, True, False]])
    log_prob, entropy = log_prob_and_entropy(policy, latent, torch.tensor([3]), masks=masks)
    torch.testing.assert_close(log_prob, torch.tensor([np.log(0.5)], dtype=torch.float32))
    torch.testing.assert_close(entropy, torch.tensor([np.log(2.0)], dtype=torch.float32))
    reference = MaskableCategoricalDistribution(5).proba_distribution(torch.zeros(1, 5))
    reference.apply_masking(masks)
    torch.testing.assert_close(entropy, reference.entropy())


@pytest.mark.parametrize("space_name", list(ACTIONS))
@pytest.mark.parametrize("deterministic", [False, True])
def test_sampled_actions_are_always_allowed(space_name, deterministic):
    policy = make_policy(space_name)
    space = ACTIONS[space_name]
    generator = torch.Generator().manual_seed(2)
    latent = 5 * torch.randn(4000, policy.mlp_extractor.latent_dim_pi, generator=generator)
    masks = random_masks(space, 4000, generator)
    with torch.no_grad():
        actions, log_prob = sample_actions(policy, latent, deterministic, masks=masks)
    assert allowed(space, actions, masks).all()
    torch.testing.assert_close(log_prob, log_prob_and_entropy(policy, latent, actions, masks=masks)[0])
    with torch.no_grad():  # without masks the same logits do pick forbidden actions: the masks did it
        free, _ = sample_actions(policy, latent, deterministic)
    assert not allowed(space, free, masks).all()


def test_evaluate_actions_equals_get_distribution_and_forward():
    """The grouped fast path (evaluate_actions, forward) and sb3-contrib's get_distribution path agree."""
    policy = make_policy("multidiscrete", enable_critic_lstm=False, shared_lstm=False)
    generator = torch.Generator().manual_seed(3)
    obs = torch.rand(12, 3, generator=generator)
    starts = torch.zeros(12)
    starts[5] = 1
    zero = policy.lstm_actor.initial_states(2)
    states = RNNStates(zero, zero)
    masks = random_masks(ACTIONS["multidiscrete"], 12, generator)
    with torch.no_grad():
        distribution, _ = policy.get_distribution(obs, states.pi, starts, action_masks=masks)
        actions = distribution.sample()
        _, log_prob, entropy = policy.evaluate_actions(obs, actions, states, starts, action_masks=masks)
        torch.testing.assert_close(log_prob, distribution.log_prob(actions))
        torch.testing.assert_close(entropy, distribution.entropy())
        acted, _, acted_log_prob, _ = policy(obs, states, starts, deterministic=True, action_masks=masks)
        torch.testing.assert_close(acted, distribution.mode())
        torch.testing.assert_close(acted_log_prob, distribution.log_prob(acted))


def test_predict_honours_masks_for_one_and_many_observations():
    policy = make_policy("discrete")
    only_two = np.array([False, False, True, False, False])
    action, state = policy.predict(np.zeros(3, np.float32), action_masks=only_two)
    assert action.shape == () and int(action) == 2
    batch_masks = np.eye(5, dtype=bool)[[4, 1, 0]]
    actions, state = policy.predict(np.zeros((3, 3), np.float32), state=None, action_masks=batch_masks)
    assert actions.tolist() == [4, 1, 0]
    assert state[0].shape == (1, 3, policy.lstm_actor.hidden_size)
    with pytest.raises(ValueError, match="5 entries per row"):
        policy.predict(np.zeros((3, 3), np.float32), action_masks=np.ones((3, 4), bool))


def test_unmasked_policy_has_the_same_weights_and_refuses_masks():
    """Discrete: the maskable policy's weights equal the unmasked one's from the same seed; masks need
    a maskable distribution."""
    torch.manual_seed(0)
    plain = SparseRecurrentPolicy(OBS, ACTIONS["discrete"], lambda _: 1e-3, hidden_size=8, net_arch=[], seed=0)
    masked = make_policy("discrete")
    for (name, a), (_, b) in zip(plain.state_dict().items(), masked.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    with pytest.raises(TypeError, match="maskable distributions"):
        sample_actions(plain, torch.zeros(2, plain.mlp_extractor.latent_dim_pi), masks=torch.ones(2, 5, dtype=bool))


def test_multibinary_has_two_logits_per_bit_and_masks_count_them():
    policy = make_policy("multibinary")
    assert policy.action_net.out_features == 6 == action_mask_dims(ACTIONS["multibinary"])


@pytest.mark.parametrize("space", [spaces.Box(-1, 1, (2,)), spaces.MultiBinary([2, 2])])
def test_spaces_without_masks_are_refused(space):
    with pytest.raises(ValueError, match="action"):
        MaskableSparseRecurrentPolicy(OBS, space, lambda _: 1e-3, hidden_size=8)
