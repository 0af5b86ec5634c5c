"""The agent command line: ``python -m sparsernn.agents {train,evaluate,sweep} ...`` (also ``sparsernn-train``).

Examples::

    python -m sparsernn.agents train --config agents/configs/cartpole_novel.yaml \\
        --cell gru --density-hh 0.1 --seed 0 --tensorboard runs/ --save-dir runs/gru_d01
    python -m sparsernn.agents train --env CartPole-v1 --algo ppo --total-timesteps 50000
    python -m sparsernn.agents evaluate runs/gru_d01/model.zip --env sparsernn/CartPoleNoVel-v1
    python -m sparsernn.agents train --config agents/configs/copy_recall_gap200_h128.yaml \
        --eval-env-kwargs '{"gap": 5000}' --save-dir runs/copy200   # taught at gap 200, evaluated at 5000
    python -m sparsernn.agents train --config agents/configs/cartpole_novel.yaml \
        --resume runs/gru_d01/checkpoints/rl_model_50000_steps.zip --total-timesteps 50000 --save-dir runs/gru_d01b
    python -m sparsernn.agents sweep --config agents/configs/cartpole_novel.yaml --n-trials 20  # sweep_rl.py

Flags override the configuration file; YAML keys are ``train``'s keyword
arguments (see :mod:`sparsernn.agents.config`). Every argument is checked before
any env or model is built: a bad value exits with status 2 and names the flag or key.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import torch

from sparsernn.core import LayerOption, layer_options

from .arguments import as_count, as_seed
from .config import load_config
from .model_files import normalization_path
from .training import ALGOS, check_train_call, evaluate, load_model, train


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum`` (``1e3`` accepted)."""
    def parse(text: str) -> int:
        try:
            return as_count("value", int(text) if text.strip().lstrip("+-").isdigit() else float(text), minimum)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}; got {text!r}") from None
    parse.__name__ = f"whole number >= {minimum}"
    return parse


def seed(text: str) -> int:
    """An argparse type: a seed in [0, 2**32)."""
    try:
        return as_seed("seed", int(text))
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a whole number in [0, 2**32); got {text!r}") from None


def json_object(text: str) -> dict[str, Any]:
    """An argparse type: a JSON object such as ``'{"gap": 200}'`` (env keyword arguments)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"gap\": 200}}'; got {text!r} "
                                         f"({error.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"gap\": 200}}'; got {text!r}")
    return value


def layer_flag(option: LayerOption) -> tuple[str, str, Callable[[str], Any], str]:
    """``(flag, key, type, help)`` of one layer option, from the layer itself: every whole-number
    option of the layer is positive (``count(1)``); options that name something take their choices."""
    kind: Callable[[str], Any] = count(1) if option.kind is int else boolean if option.kind is bool else option.kind
    if option.choices is not None:
        kind = choice([value for value in option.choices if value is not None])
    return f"--{option.name.replace('_', '-')}", option.name, kind, option.help.replace("%", "%%")


def boolean(text: str) -> bool:
    """An argparse type: ``true`` / ``false`` (any case; also ``1`` / ``0``)."""
    value = {"true": True, "1": True, "false": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false; got {text!r}")
    return value


def choice(allowed: list[str]) -> Callable[[str], str]:
    """An argparse type: one of ``allowed`` (the message lists them)."""
    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(allowed)}; got {text!r}")
        return text
    parse.__name__ = f"one of {', '.join(allowed)}"
    return parse


# (flag, key, type, help) of the options that go to policy_kwargs and ppo_kwargs: the policy's own, then
# every layer option (derived from SparseRecurrent; router_keep, one or two fractions, is --router-keep).
POLICY_FLAGS = (
    ("--hidden-size", "hidden_size", count(1), "recurrent units"),
    ("--param-budget", "param_budget", count(1), "trainable recurrent weights (with --hidden-proportion)"),
    ("--hidden-proportion", "hidden_proportion", float, "N_hh / (N_ih + N_hh) in (0, 1)"),
)
LAYER_FLAGS = POLICY_FLAGS + tuple(layer_flag(option) for option in layer_options().values()
                                   if option.name != "router_keep")
SEQUENCE_OPTIONS = frozenset(option.name for option in layer_options().values() if option.sequence)
"""Layer options that take several values (``--rhythm-periods 288 2016``)."""
PPO_FLAGS = (
    ("--n-steps", "n_steps", count(1), "rollout steps per env"),
    ("--batch-size", "batch_size", count(1), "minibatch size"),
    ("--n-epochs", "n_epochs", count(1), "epochs per update"),
    ("--learning-rate", "learning_rate", str, "number or lin_<start>"),
    ("--clip-range", "clip_range", str, "number or lin_<start>"),
    ("--gamma", "gamma", float, "discount"),
    ("--gae-lambda", "gae_lambda", float, "GAE lambda"),
    ("--ent-coef", "ent_coef", float, "entropy coefficient"),
    ("--vf-coef", "vf_coef", float, "value-loss coefficient"),
    ("--max-grad-norm", "max_grad_norm", float, "gradient clipping"),
    ("--aux-loss-coef", "aux_loss_coef", float, "weight of the layers' aux loss (algo sparse)"),
    ("--chunk-length", "chunk_length", count(1), "training sequence length (algo sparse; divides n_steps)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sparsernn.agents", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    tr = commands.add_parser("train", help="train an agent, save it and evaluate it")
    tr.add_argument("--env", dest="env_id", help="Gymnasium env id (sparsernn/ ids are registered)")
    tr.add_argument("--config", help="YAML configuration file")
    tr.add_argument("--algo", choices=list(ALGOS), help="sparse (default), maskable (sparse with action masks), "
                    "recurrent (stock), ppo or ppo_mask (sb3-contrib's MaskablePPO)")
    tr.add_argument("--policy", help="policy name (default per algo)")
    tr.add_argument("--router-keep", type=float, nargs="+", help=layer_options()["router_keep"].help)
    for group, flags in (("recurrent layer", LAYER_FLAGS), ("PPO", PPO_FLAGS)):
        options = tr.add_argument_group(group)
        for flag, key, kind, help_text in flags:
            options.add_argument(flag, dest=key, type=kind, help=help_text,
                                 nargs="+" if key in SEQUENCE_OPTIONS else None)
    tr.add_argument("--total-timesteps", type=count(1), help="steps to train (with --resume: steps added)")
    tr.add_argument("--n-envs", type=count(1))
    tr.add_argument("--seed", type=seed)
    tr.add_argument("--env-kwargs", type=json_object, help='gym.make keyword arguments, e.g. \'{"gap": 200}\'')
    tr.add_argument("--eval-env-kwargs", type=json_object,
                    help="keyword arguments of the evaluation envs where they differ from training's")
    tr.add_argument("--normalize", action=argparse.BooleanOptionalAction, help="VecNormalize the envs")
    tr.add_argument("--tensorboard", dest="tensorboard_log", help="TensorBoard log directory")
    tr.add_argument("--save-dir", help="where model.zip, model.vecnormalize.json and checkpoints go")
    tr.add_argument("--overwrite", action="store_true", default=None,
                    help="replace the model.zip of an existing --save-dir (refused otherwise)")
    tr.add_argument("--resume", metavar="PATH",
                    help="continue a saved model or checkpoint (weights, step count, normalisation statistics)")
    tr.add_argument("--checkpoint-freq", type=count(0), help="env steps between checkpoints (needs --save-dir)")
    tr.add_argument("--eval-freq", type=count(0), help="env steps between evaluations (needs --save-dir)")
    tr.add_argument("--eval-episodes", type=count(0), help="episodes of the final evaluation (0: none)")
    tr.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=None)
    tr.add_argument("--device", help="auto, cpu or cuda")
    tr.add_argument("--threads", type=count(0), default=1, help="torch threads (0: torch's default)")
    tr.add_argument("-v", "--verbose", type=count(0))
    ev = commands.add_parser("evaluate", help="evaluate a saved model")
    ev.add_argument("model", help="path of a saved model (.zip)")
    ev.add_argument("--env", dest="env_id", required=True)
    ev.add_argument("--algo", choices=list(ALGOS), default="sparse")
    ev.add_argument("--vecnormalize", metavar="PATH",
                    help="normalisation statistics (JSON written by train; default: <model>.vecnormalize.json "
                         "beside the model, if present). Pickles are never read.")
    ev.add_argument("--episodes", type=count(1), default=10)
    ev.add_argument("--seed", type=seed)
    ev.add_argument("--env-kwargs", type=json_object, help='gym.make keyword arguments, e.g. \'{"gap": 5000}\'')
    ev.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    ev.add_argument("--threads", type=count(0), default=1)
    try:
        from . import sweep_rl
    except ImportError:  # optuna missing: pip install "sparsernn[sweep]"
        pass
    else:
        sweep_rl.add_parser(commands)
    return parser


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Merge the configuration file and the flags (flags win) into ``train`` keyword arguments."""
    kwargs = load_config(args.config) if args.config else {}
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    ppo_kwargs = dict(kwargs.get("ppo_kwargs") or {})
    for _, key, _, _ in LAYER_FLAGS:
        if getattr(args, key) is not None:
            policy_kwargs[key] = getattr(args, key)
    if args.router_keep is not None:
        if len(args.router_keep) > 2:
            raise SystemExit(f"--router-keep takes one or two fractions; got {args.router_keep}")
        policy_kwargs["router_keep"] = args.router_keep[0] if len(args.router_keep) == 1 else tuple(args.router_keep)
    for _, key, _, _ in PPO_FLAGS:
        if getattr(args, key) is not None:
            ppo_kwargs[key] = getattr(args, key)
    kwargs["policy_kwargs"], kwargs["ppo_kwargs"] = policy_kwargs, ppo_kwargs
    for key in ("env_id", "algo", "policy", "total_timesteps", "n_envs", "seed", "normalize", "tensorboard_log",
                "save_dir", "checkpoint_freq", "eval_freq", "eval_episodes", "progress_bar", "device", "verbose",
                "overwrite", "resume", "env_kwargs", "eval_env_kwargs"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    kwargs.setdefault("progress_bar", True)
    if not kwargs.get("env_id"):
        raise SystemExit("give an env id with --env or env_id in --config")
    return kwargs


def _checked_train_kwargs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """``train_kwargs(args)`` checked as ``train`` checks them; a bad value exits with status 2."""
    try:
        kwargs = train_kwargs(args)
        check_train_call(**kwargs)
    except (TypeError, ValueError, FileExistsError, FileNotFoundError) as error:
        parser.error(str(error))
    return kwargs


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad arguments, before any work)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "sweep":
        from . import sweep_rl
        return sweep_rl.main(parser, args)
    if args.command == "train":
        result = train(**_checked_train_kwargs(parser, args))
        report = {"model": str(result.model_path) if result.model_path else None}
        if result.evaluation is not None:
            report.update(mean_return=result.evaluation.mean_return, std_return=result.evaluation.std_return,
                          success_rate=result.evaluation.success_rate)
        print(json.dumps(report))
        return 0
    stats = args.vecnormalize
    beside = normalization_path(args.model)
    if stats is None and beside.is_file():
        stats = beside  # our JSON: reading it runs no code, unlike the pickles SB3 writes
    try:
        model = load_model(args.model, args.algo)
        evaluation = evaluate(model, args.env_id, args.episodes, vec_normalize=stats,
                              deterministic=not args.stochastic, seed=args.seed, env_kwargs=args.env_kwargs)
    except (ValueError, FileNotFoundError) as error:  # a damaged file, a missing one, an env that does not fit
        raise SystemExit(f"{parser.prog} evaluate: error: {error}") from None
    print(json.dumps({"mean_return": evaluation.mean_return, "std_return": evaluation.std_return,
                      "success_rate": evaluation.success_rate, "returns": evaluation.returns,
                      "lengths": evaluation.lengths}))
    return 0
