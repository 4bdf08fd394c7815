# An Azure ML CLI HyperDrive configuration, used as it is: hdconfig.yml gives the space,
# sampling, policy, objective and limits; trial {} gives the script and compute. Parameters
# reach the script as Azure ML passes them: `--penalty VALUE` for a name written with dashes,
# `--learning_rate VALUE` for one written without (learning_rate).

compute "local" {
  type                = "local"
  max_concurrent_runs = 2 # hdconfig.yml runs two trials at once
}

sweep "penalty" {
  experiment        = "hyperdrive-example"
  hyperdrive_config = "hdconfig.yml"

  trial {
    compute    = compute.local
    source_dir = "src"
    script     = "train.py"
  }
}
