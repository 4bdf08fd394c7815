"""Loading configuration directories (HCL and YAML) into the typed model."""
