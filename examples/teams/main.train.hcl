# Two teams from one module: each team gets its own local compute box and its own training
# run, with its own hyperparameters. Runs on the embedded defaults (SQLite state in
# .trainform/ beside this file, the built-in local provider).
#
# Addresses name the module instance: module.team["vision"].run.train.

variable "teams" {
  type = map(object({ learning_rate = number, epochs = number }))
  default = {
    vision = { learning_rate = 0.5, epochs = 4 }
    speech = { learning_rate = 0.2, epochs = 3 }
  }
}

module "team" {
  source   = "./modules/team"
  for_each = var.teams

  name          = each.key
  learning_rate = each.value.learning_rate
  epochs        = each.value.epochs
}

output "boxes" {
  value = { for name, team in module.team : name => team.box }
}

output "runs" {
  value = { for name, team in module.team : name => team.run_id }
}
