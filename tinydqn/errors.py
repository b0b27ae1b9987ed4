"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
  """Bad input from the user: an invalid config value, an unknown env or preset, a missing checkpoint."""
