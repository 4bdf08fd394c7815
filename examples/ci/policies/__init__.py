"""checkov loads custom checks only from a folder with an __init__.py."""
