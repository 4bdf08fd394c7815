# Quick start: a workspace, the local machine as compute (plus a counted pool of two local
# "slots"), an environment, a training run, and outputs. Runs only on the embedded defaults:
# SQLite state in .trainform/ beside this file and the built-in local provider.

variable "team" {
  type        = string
  default     = "vision"
  description = "Who owns these resources"
}

variable "slots" {
  type    = number
  default = 2
  validation {
    condition     = var.slots >= 1 && var.slots <= 8
    error_message = "slots must be between 1 and 8"
  }
}

variable "learning_rate" {
  type    = number
  default = 0.5
}

variable "tracking_token" {
  type        = string
  sensitive   = true
  default     = "change-me"
  description = "Token for an experiment tracker (stored only as a salted hash)"
}

locals {
  labels = { team = var.team, managed_by = "trainform" }
}

workspace "main" {
  description = "Experiments of team ${var.team}"
  tags        = local.labels
  # A demo: `trainform destroy` may remove the artifact store with the runs' logs and outputs
  # (the run records stay in state). Without it, destroy refuses while runs are recorded.
  force_destroy = true
}

compute "workstation" {
  type                = "local"
  max_concurrent_runs = 1
  tags                = merge(local.labels, { role = "dev" })
}

compute "slot" {
  type                = "local"
  count               = var.slots
  max_concurrent_runs = 1
  tags                = merge(local.labels, { slot = tostring(count.index) })
}

# The script needs nothing but the standard library, so the interpreter is used as is. For a
# managed virtualenv (built once per target, keyed by interpreter + requirements), give
# `pip = ["numpy==2.1.3"]` instead of `user_managed = true`.
environment "system" {
  python       = "python3"
  user_managed = true
  variables    = { TRACKING_TOKEN = var.tracking_token }
}

run "train" {
  experiment   = "quickstart"
  workspace    = workspace.main
  compute      = compute.workstation
  environment  = environment.system
  source_dir   = "src"
  script       = "train.py"
  arguments    = ["--lr", var.learning_rate, "--epochs", 10]
  max_duration = "5m"
  tags         = local.labels
}

output "workstation_cpus" {
  value       = compute.workstation.facts.cpus
  description = "CPUs found on the workstation"
}

output "slot_hosts" {
  value = compute.slot[*].facts.hostname
}

output "artifact_store" {
  value = workspace.main.path
}

output "model" {
  value = "${run.train.outputs_path}/model.json"
}
