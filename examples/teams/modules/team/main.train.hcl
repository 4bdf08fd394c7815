# One team: a compute box and a training run. Paths here (source_dir) are relative to this
# module's folder, so the run snapshots modules/team/src.

variable "name" {
  type        = string
  description = "The team's name; its experiment is team-NAME"
}

variable "learning_rate" {
  type = number
  validation {
    condition     = var.learning_rate > 0 && var.learning_rate <= 1
    error_message = "learning_rate must be in (0, 1]"
  }
}

variable "epochs" {
  type    = number
  default = 3
}

compute "box" {
  type = "local"
  tags = { team = var.name }
}

run "train" {
  experiment = "team-${var.name}"
  compute    = compute.box
  source_dir = "src"
  script     = "train.py"
  arguments  = ["--lr", var.learning_rate, "--epochs", var.epochs, "--team", var.name]
}

output "box" {
  value = compute.box.address
}

output "run_id" {
  value = run.train.run_id
}
