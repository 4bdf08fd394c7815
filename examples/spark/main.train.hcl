# Spark on a laptop: a local[2] master (the driver and two executor threads in one JVM on this
# machine), a word count whose helper module travels to the executors in the snapshot's zip
# (--py-files), and its counts as an output. Needs Java 17+ and an interpreter with pyspark;
# SPARK_HOME (or spark_home) is that pyspark's folder. For a cluster, set master to
# "spark://HOST:7077" (see the README's "## Spark").

variable "python" {
  type        = string
  default     = "python3"
  description = "An interpreter with pyspark: the driver's, and the executors' (PYSPARK_PYTHON)"
}

variable "spark_home" {
  type        = string
  default     = ""
  description = "Spark's folder (default: SPARK_HOME, the pyspark package, spark-submit on PATH)"
}

compute "laptop" {
  type       = "spark"
  master     = "local[2]"
  spark_home = var.spark_home
  env        = { SPARK_LOCAL_IP = "127.0.0.1" }            # no DNS lookup of the hostname
  conf       = { "spark.ui.showConsoleProgress" = "false" } # no progress bars in the log
}

environment "pyspark" {
  python       = var.python
  user_managed = true
}

run "words" {
  experiment  = "spark-example"
  compute     = compute.laptop
  environment = environment.pyspark
  source_dir  = "src"
  script      = "wordcount.py"
  arguments   = ["--top", 5]
  spark {
    driver_memory = "1g"
    conf          = { "spark.sql.shuffle.partitions" = "4" }
  }
}

output "counts" {
  value = "${run.words.outputs_path}/counts.json"
}
