"""`python -m checkpoints_conversion`: see checkpoints_conversion/cli.py."""
from checkpoints_conversion import cli

if __name__ == "__main__":
  cli.main()
