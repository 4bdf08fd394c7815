"""Logistic-regression stand-in taking --penalty, as an Azure ML HyperDrive sample would."""

import argparse

from trainform.tracking import log_metric

parser = argparse.ArgumentParser()
parser.add_argument("--penalty", type=float, required=True)
args = parser.parse_args()
for epoch in range(1, 6):
    accuracy = (0.9 - 0.1 * abs(args.penalty - 1.0)) * epoch / 5
    print(f"epoch {epoch} Accuracy {accuracy:.4f}", flush=True)
    log_metric("Accuracy", accuracy, step=epoch)
