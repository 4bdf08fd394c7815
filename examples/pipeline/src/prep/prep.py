"""Reads every CSV file of the raw dataset (its folder comes as --raw, from input_args) and
writes their rows, in one file, as the output "features"."""

import argparse
import csv
import os

parser = argparse.ArgumentParser()
parser.add_argument("--raw", required=True)
raw = parser.parse_args().raw

rows = []
for name in sorted(os.listdir(raw)):
    with open(os.path.join(raw, name)) as f:
        rows += [(float(r["temp"]), float(r["sales"])) for r in csv.DictReader(f)]

os.makedirs("outputs/features", exist_ok=True)
with open("outputs/features/rows.csv", "w") as f:
    f.writelines(f"{t},{s}\n" for t, s in rows)
print(f"prep: {len(rows)} rows from {len(os.listdir(raw))} files")
