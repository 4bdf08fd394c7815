"""Running one run on a target: the stdlib-only launcher that every provider ships."""
