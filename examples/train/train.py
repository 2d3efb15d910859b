"""Train a small classifier on the parquet folder the Databricks notebook wrote.

An Azure ML command job: it logs into the job's MLflow run (MLFLOW_* variables set by Azure ML, or
by `aml-databricks pipeline run`), writes the model and metrics.json to --model, and prints the metric.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path

import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split


def read_parquet_folder(folder: Path) -> pd.DataFrame:
    """Every parquet part file, skipping Spark's and the step's sidecars (_SUCCESS, _databricks/...)."""
    parts = sorted(
        path
        for path in folder.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in path.relative_to(folder).parts)
    )
    if not parts:
        raise SystemExit(f"no parquet files in {folder}")
    return pd.concat([pd.read_parquet(path) for path in parts], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder of parquet files")
    parser.add_argument("--model", type=Path, required=True, help="output folder")
    parser.add_argument("--target", default="target", help="label column (default: %(default)s)")
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--max-depth", type=int, default=None)
    args = parser.parse_args()

    frame = read_parquet_folder(args.data)
    if args.target not in frame.columns:
        raise SystemExit(f"no column {args.target!r} in the data (columns: {', '.join(frame.columns)})")
    features = [c for c in frame.select_dtypes("number").columns if c != args.target]
    x_train, x_test, y_train, y_test = train_test_split(
        frame[features],
        frame[args.target],
        test_size=args.test_size,
        random_state=0,
        stratify=frame[args.target],
    )
    model = RandomForestClassifier(n_estimators=50, max_depth=args.max_depth, random_state=0)
    model.fit(x_train, y_train)
    accuracy = float(accuracy_score(y_test, model.predict(x_test)))

    args.model.mkdir(parents=True, exist_ok=True)
    saved = args.model / "model.pkl"
    with saved.open("wb") as handle:
        pickle.dump(model, handle)
    metrics = {"rows": len(frame), "features": features, "test_rows": len(x_test), "accuracy": accuracy}
    (args.model / "metrics.json").write_text(json.dumps(metrics, indent=2))

    # Azure ML sets MLFLOW_TRACKING_URI and MLFLOW_RUN_ID: start_run() resumes the job's own run.
    if os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        with mlflow.start_run():
            mlflow.log_params(
                {
                    "rows": len(frame),
                    "features": len(features),
                    "max_depth": args.max_depth,
                    "test_size": args.test_size,
                    "model": "RandomForestClassifier",
                }
            )
            mlflow.log_metric("accuracy", accuracy)

    print(f"read {len(frame)} rows, {len(features)} features; model saved to {saved}")
    print(f"accuracy: {accuracy:.4f} on {len(x_test)} held-out rows")


if __name__ == "__main__":
    main()
