"""A smoke-test training run: a few steps of a toy loss, reported through trainform's
tracking client, and a small model file in the outputs folder that trainform collects."""

import argparse
import json
import os

from trainform.tracking import log_metric

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=5)
args = parser.parse_args()

loss = 1.0
for step in range(args.steps):
    loss *= 0.5
    log_metric("loss", loss, step=step)
    print(f"step {step}: loss {loss:.4f}", flush=True)

out = os.environ.get("TRAINFORM_OUTPUT_DIR", "outputs")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "model.json"), "w") as f:
    json.dump({"steps": args.steps, "loss": loss}, f)
