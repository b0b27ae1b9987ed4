"""tinydqn: Deep Q-Networks on tinygrad."""
__version__ = "0.1.0"
