# A team's training infrastructure, deployed by review-gated CI (README.md beside this file):
# a pull request gets a plan, a policy check and a Markdown summary; the merge applies
# exactly that plan. State is shared in PostgreSQL; the connection string (a secret: it holds
# a password) comes from TRAINFORM_PG_CONN_STR, never from this file.

trainform {
  backend "pg" {
    schema_name = "trainform_ci"
  }
}

variable "owner" {
  type        = string
  default     = "ml-platform"
  description = "The team answerable for these resources (the policies require an owner tag)"
}

# Runs' snapshots, logs and outputs: a folder every runner that applies sees (a shared
# volume), since a runner's own disk is gone after its job. CI sets it in the environment
# (TRAINFORM_VAR_artifact_store); the plan file records it.
variable "artifact_store" {
  type        = string
  description = "Absolute path of the team's artifact store on shared storage"
}

locals {
  tags = { owner = var.owner, managed_by = "trainform-ci" }
}

workspace "team" {
  description    = "Experiments deployed from the main branch"
  artifact_store = var.artifact_store
  tags           = local.tags
}

compute "runner" {
  type                = "local"
  max_concurrent_runs = 1
  tags                = merge(local.tags, { role = "ci" })
}

environment "system" {
  python       = "python3"
  user_managed = true
}

run "smoke" {
  experiment   = "ci-smoke"
  workspace    = workspace.team
  compute      = compute.runner
  environment  = environment.system
  source_dir   = "src"
  script       = "train.py"
  arguments    = ["--steps", 5]
  max_duration = "10m"
  tags         = local.tags
}

output "artifact_store" {
  value = workspace.team.path
}
