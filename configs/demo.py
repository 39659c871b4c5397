"""What `make demo` runs. Until the full recipe exists this is the smallest real task (toy regression)."""
from configs import toy_regression


def get_config(arg=None):
  return toy_regression.get_config(arg)
