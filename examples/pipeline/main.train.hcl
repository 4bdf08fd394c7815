compute "laptop" {
  type = "local"
}

dataset "raw" {
  source      = "data" # a folder (or a file) beside this file, or an https URL with sha256
  description = "daily temperature and sales, one CSV file a week"
}

run "prep" {
  experiment = "pipeline"
  compute    = compute.laptop
  source_dir = "src/prep"
  script     = "prep.py"
  inputs     = { raw = dataset.raw }
  input_args = true                              # prep.py --raw PATH
  outputs    = { features = "outputs/features" } # inside outputs_dir
}

run "train" {
  experiment = "pipeline"
  compute    = compute.laptop
  source_dir = "src/train"
  script     = "train.py"
  inputs     = { features = run.prep.outputs["features"] } # TRAINFORM_INPUT_FEATURES
  outputs    = { model = "outputs/model.json" }
}

output "model" {
  value = "${run.train.outputs_path}/model.json"
}
