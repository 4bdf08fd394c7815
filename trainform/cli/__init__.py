"""The command-line interface: the only layer that prints, prompts and picks exit codes."""
