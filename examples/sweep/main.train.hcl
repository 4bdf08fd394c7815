# A hyperparameter sweep on the local machine: random sampling, bandit early termination.
# `trainform apply` runs the controller and streams its decisions; `trainform sweeps show
# tune-lr` lists the trials, why each stopped, and the best one.

compute "local" {
  type                = "local"
  max_concurrent_runs = 2
}

sweep "tune-lr" {
  experiment = "sweep-example"

  trial {
    compute    = compute.local
    source_dir = "src"
    script     = "train.py"
    arguments  = ["--lr", param.lr, "--batch", param.batch]
  }

  sampling {
    algorithm = "random"
    seed      = 7
  }

  parameter "lr" {
    distribution = "loguniform"
    min          = -9
    max          = -2
  }

  parameter "batch" {
    distribution = "choice"
    values       = [32, 64, 128]
  }

  objective {
    metric = "accuracy"
    goal   = "maximize"
  }

  early_termination {
    policy              = "bandit"
    slack_factor        = 0.2
    evaluation_interval = 1
    delay_evaluation    = 3
  }

  limits {
    max_total_runs      = 8
    max_concurrent_runs = 2
    max_duration        = "10m"
    trial_max_duration  = "2m"
  }
}

output "best" {
  value = sweep.tune-lr.best_params
}
