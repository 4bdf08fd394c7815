"""Logistic regression on generated data, in pure Python (no dependencies).

Reports loss and accuracy per epoch through trainform's tracking client and writes the
model to the outputs folder that trainform collects.
"""

import argparse
import json
import math
import os
import random

from trainform.tracking import log_metric, log_param

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.5)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--samples", type=int, default=2000)
parser.add_argument("--seed", type=int, default=7)
args = parser.parse_args()
for name, value in vars(args).items():
    log_param(name, value)

rng = random.Random(args.seed)
true_w = [1.5, -2.0, 0.7]
data = []
for _ in range(args.samples):
    x = [rng.gauss(0, 1) for _ in true_w]
    z = sum(w * v for w, v in zip(true_w, x)) + rng.gauss(0, 0.5)
    data.append((x, 1 if z > 0 else 0))
split = int(0.8 * len(data))
train, test = data[:split], data[split:]

w = [0.0] * len(true_w)
b = 0.0


def predict(x):
    z = b + sum(wi * xi for wi, xi in zip(w, x))
    return 1 / (1 + math.exp(-max(min(z, 30), -30)))


for epoch in range(args.epochs):
    rng.shuffle(train)
    loss = 0.0
    for x, y in train:
        p = predict(x)
        loss -= y * math.log(p + 1e-12) + (1 - y) * math.log(1 - p + 1e-12)
        grad = p - y
        w = [wi - args.lr * grad * xi / 32 for wi, xi in zip(w, x)]
        b -= args.lr * grad / 32
    loss /= len(train)
    accuracy = sum((predict(x) > 0.5) == bool(y) for x, y in test) / len(test)
    print(f"epoch {epoch:2d}  loss {loss:.4f}  accuracy {accuracy:.3f}", flush=True)
    log_metric("loss", loss, step=epoch)
    log_metric("accuracy", accuracy, step=epoch)

out = os.environ.get("TRAINFORM_OUTPUT_DIR", "outputs")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "model.json"), "w") as fh:
    json.dump({"weights": w, "bias": b, "accuracy": accuracy}, fh, indent=2)
print(f"saved model to {out}/model.json")
