"""tinydqn: Deep Q-Networks on tinygrad.

    import tinydqn
    result = tinydqn.train(tinydqn.make_config("CartPole-v1", seed=1))   # a run directory, as `tinydqn train` writes
    policy = tinydqn.load(result.run_dir)                                 # its final policy (best=True: its best)
    action = policy.predict(obs)                                          # greedy; a batch of observations gives an array

`tinydqn.DQN` takes Stable-Baselines3's calls over the same functions (tinydqn/sb3.py).

The names below are imported when first used, so `import tinydqn` (and `tinydqn --help`) does not start tinygrad,
which reads its settings (DEV, the CPU levers of `tinydqn.fast`) when imported.
"""
import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {"make_config": "tinydqn.config", "Config": "tinydqn.config", "train": "tinydqn.train",
           "resume": "tinydqn.train", "TrainResult": "tinydqn.train", "evaluate": "tinydqn.evaluate",
           "make_env": "tinydqn.envs", "load": "tinydqn.policy", "Policy": "tinydqn.policy", "DQN": "tinydqn.sb3",
           "UserError": "tinydqn.errors"}
__all__ = ["__version__", "make_config", "Config", "train", "resume", "TrainResult", "evaluate", "make_env", "load", "Policy",
           "DQN", "UserError"]
# Public functions named as the submodules that hold them: importing `tinydqn.train` binds the module to that name.
_NAMED_AS_MODULES = ("train", "evaluate")

if TYPE_CHECKING:
  from tinydqn.config import Config, make_config
  from tinydqn.envs import make_env
  from tinydqn.errors import UserError
  from tinydqn.evaluate import evaluate
  from tinydqn.policy import Policy, load
  from tinydqn.sb3 import DQN
  from tinydqn.train import TrainResult, resume, train


class _CallableModule(types.ModuleType):
  """`tinydqn.train` and `tinydqn.evaluate` are both the submodule (`import tinydqn.train as t` keeps working, as do
  monkeypatches of its globals) and the function: calling the module calls the function of its name."""

  def __call__(self, *args: Any, **kwargs: Any) -> Any:
    return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)

  @property
  def __signature__(self):  # inspect.signature and help() show the function's parameters
    import inspect
    return inspect.signature(getattr(self, self.__name__.rpartition(".")[2]))


class _Package(types.ModuleType):
  def __setattr__(self, name: str, value: Any) -> None:
    # the import system binds each submodule to its package by setattr once it is loaded
    if name in _NAMED_AS_MODULES and isinstance(value, types.ModuleType): value.__class__ = _CallableModule
    super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
  if name not in _PUBLIC: raise AttributeError(f"module 'tinydqn' has no attribute {name!r}")
  module = importlib.import_module(_PUBLIC[name])
  value = module if name in _NAMED_AS_MODULES else getattr(module, name)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted({*globals(), *_PUBLIC})
