"""Planning: the pure diff of (configuration, prior state, observed reality) into a Plan."""
