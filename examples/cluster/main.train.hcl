# A Docker-backed cluster that costs nothing until runs arrive. The 2-node run and the
# one-node run are submitted together; max_nodes = 2, so whichever comes second waits in the
# queue (`trainform runs show` says why) until nodes free up. After idle_timeout the cluster
# is back to zero nodes, also when nothing else runs (a watcher process sees to it).
#
#   scripts/build-base-image                       # once: a local image with python3
#   trainform -C examples/cluster apply -auto-approve
#   trainform -C examples/cluster compute show cpu-cluster
#   trainform -C examples/cluster destroy -auto-approve

compute "cpu-cluster" {
  type         = "docker-cluster"
  node_image   = "trainform/base:latest"
  min_nodes    = 0
  max_nodes    = 2
  idle_timeout = "30s"

  node_size {
    cpus   = 1
    memory = "512m"
  }
}

run "ddp" {
  experiment = "cluster-example"
  compute    = compute.cpu-cluster
  script     = "ddp.py"
  node_count = 2
}

run "eval" {
  experiment = "cluster-example"
  compute    = compute.cpu-cluster
  script     = "eval.py"
}
