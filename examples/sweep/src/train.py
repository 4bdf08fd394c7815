"""A stand-in for a training script whose accuracy curve is a known function of its
hyperparameters: best near lr = 0.01 and batch = 64. Reports accuracy every epoch."""

import argparse
import math
import time

from trainform.tracking import log_metric, log_param

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--epochs", type=int, default=10)
args = parser.parse_args()
log_param("lr", args.lr)
log_param("batch", args.batch)

ceiling = 0.95 - 0.08 * abs(math.log10(args.lr) + 2) - 0.02 * abs(math.log2(args.batch / 64))
for epoch in range(1, args.epochs + 1):
    accuracy = ceiling * (1 - math.exp(-epoch / 2.5))
    print(f"epoch {epoch} accuracy={accuracy:.4f}", flush=True)
    log_metric("accuracy", accuracy, step=epoch)
    time.sleep(0.2)
