"""Edge export: speed and agreement of ONNX, optimised and quantised models against the source.

Trains iris (scikit-learn), an XGBoost classifier and a small torch MLP, exports each with int8
and fp16, and prints one table row per variant (batch of 150 rows, median of 20 runs).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import joblib
import torch
import xgboost as xgb
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from nstarx_jupyter.deployment.export.bundle import export_runtime
from nstarx_jupyter.runtimes.loader import create_runtime


def main() -> None:
    x, y = load_iris(return_X_y=True)
    folder = Path(tempfile.mkdtemp(prefix="nstarx-export-bench-"))
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), folder / "iris.joblib")
    xgb.XGBClassifier(n_estimators=50, max_depth=4).fit(x, y).save_model(folder / "x.json")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 256), torch.nn.ReLU(), torch.nn.Linear(256, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(net.eval()), folder / "net.pt")
    models = {"iris.joblib": {}, "x.json": {}, "net.pt": {"example_input": x[:2].tolist()}}
    print("| model | variant | bytes | agreement | max abs diff | batch ms | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for file, options in models.items():
        runtime = create_runtime(folder / file, options=options)
        runtime.load()
        seen = set()
        for quantize in ("int8", "fp16"):
            report = export_runtime(runtime, x, folder / f"{file}-{quantize}", quantize=quantize)
            for row in report.rows:
                if row["variant"] in seen:
                    continue
                seen.add(row["variant"])
                diff = "-" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.2g}"
                print(
                    f"| {file} | {row['variant']} | {row['size_bytes'] or '-'} | "
                    f"{row['agreement']:.3f} | {diff} | {row['batch_ms']:.3f} | "
                    f"{row['speedup']:.2f} |"
                )


if __name__ == "__main__":
    main()
