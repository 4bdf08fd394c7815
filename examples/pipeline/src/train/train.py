"""Fits sales = a * temp + b to the rows prep wrote (TRAINFORM_INPUT_FEATURES) and writes the
output "model"."""

import json
import os

path = os.path.join(os.environ["TRAINFORM_INPUT_FEATURES"], "rows.csv")
with open(path) as f:
    xs, ys = zip(*((float(v) for v in line.split(",")) for line in f))
n = len(xs)
mx, my = sum(xs) / n, sum(ys) / n
a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
b = my - a * mx

os.makedirs("outputs", exist_ok=True)
with open("outputs/model.json", "w") as f:
    json.dump({"a": round(a, 3), "b": round(b, 3), "rows": n}, f)
print(f"train: sales = {a:.2f} * temp + {b:.2f} ({n} rows)")
