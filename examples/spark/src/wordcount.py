"""A word count on Spark: the run's script is the driver (spark-submit runs it in client mode);
text.words runs on the executors."""

from __future__ import annotations

import argparse
import json
import os

import text
from pyspark.sql import SparkSession

LINES = [
    "It was the best of times, it was the worst of times,",
    "it was the age of wisdom, it was the age of foolishness,",
    "it was the epoch of belief, it was the epoch of incredulity,",
    "it was the season of Light, it was the season of Darkness,",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()

    spark = SparkSession.builder.appName("wordcount").getOrCreate()
    sc = spark.sparkContext
    print(f"application {sc.applicationId} on {sc.master}", flush=True)
    counts = (
        sc.parallelize(LINES, 4)
        .flatMap(text.words)
        .map(lambda word: (word, 1))
        .reduceByKey(lambda a, b: a + b)
        .collect()
    )
    top = sorted(counts, key=lambda kv: (-kv[1], kv[0]))[: args.top]
    for word, n in top:
        print(f"{word}: {n}", flush=True)
    out = os.environ.get("TRAINFORM_OUTPUT_DIR", "outputs")  # collected by trainform
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "counts.json"), "w") as f:
        json.dump(dict(top), f)
    spark.stop()


if __name__ == "__main__":
    main()
