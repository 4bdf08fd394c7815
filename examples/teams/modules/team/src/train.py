"""A tiny training loop in pure Python: fits y = 3x + 1 by gradient descent and reports the
loss per epoch through trainform's tracking client."""

import argparse
import random

from trainform.tracking import log_metric, log_param

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--team", default="")
args = parser.parse_args()
for name, value in vars(args).items():
    log_param(name, value)

rng = random.Random(7)
data = [(x, 3 * x + 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(200))]
w, b = 0.0, 0.0
for epoch in range(args.epochs):
    for x, y in data:
        err = w * x + b - y
        w -= args.lr * 0.1 * err * x
        b -= args.lr * 0.1 * err
    loss = sum((w * x + b - y) ** 2 for x, y in data) / len(data)
    log_metric("loss", loss, step=epoch)
    print(f"team {args.team} epoch {epoch}: loss {loss:.4f}")
print(f"team {args.team}: w={w:.3f} b={b:.3f}")
