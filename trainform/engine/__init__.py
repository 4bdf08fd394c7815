"""Apply and destroy: a parallel walk of the plan's changes through providers."""
