"""Tiny Azure ML components and pipelines written into a test's tmp_path: plain python commands."""

from __future__ import annotations

import textwrap
from pathlib import Path

# Writes N lines to its output, logs a metric into the job's MLflow run, prints its environment.
MAKE_PY = """
import argparse, os, pathlib, sys
parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int)
parser.add_argument("--out")
parser.add_argument("--label", default="none")
parser.add_argument("--fail", default="False")
args = parser.parse_args()
print("cwd", os.getcwd())
print("run", os.environ["AZUREML_RUN_ID"], "mlflow", os.environ["MLFLOW_RUN_ID"])
print("label", args.label)
if args.fail == "True":
    print("Traceback: something broke", file=sys.stderr)
    sys.exit(3)
pathlib.Path(args.out, "rows.txt").write_text("".join(f"{i}\\n" for i in range(args.n)))
from mlflow.tracking import MlflowClient
MlflowClient().log_metric(os.environ["MLFLOW_RUN_ID"], "rows", args.n)
"""

MAKE_YML = """
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: make_rows
version: "1"
code: .
environment: azureml:python:1
command: >-
  python make.py --n ${{inputs.n}} --out ${{outputs.rows}}
  $[[--label ${{inputs.label}}]] $[[--fail ${{inputs.fail}}]]
inputs:
  n: {type: integer}
  label: {type: string, optional: true}
  fail: {type: boolean, optional: true}
outputs:
  rows: {type: uri_folder}
"""

COUNT_YML = """
type: command
name: count_rows
version: "2"
environment: azureml:python:1
command: >-
  python -c "import pathlib, sys; rows = pathlib.Path(sys.argv[1], 'rows.txt').read_text().split();
  pathlib.Path(sys.argv[2], 'count.txt').write_text(str(len(rows))); print('counted', len(rows))"
  ${{inputs.rows}} ${{outputs.count}}
inputs:
  rows: {type: uri_folder}
outputs:
  count: {type: uri_folder}
"""

PIPELINE_YML = """
type: pipeline
display_name: tiny
experiment_name: tiny-experiment
inputs:
  n: 5
jobs:
  count:
    type: command
    component: azureml:count_rows:2
    inputs:
      rows: ${{parent.jobs.make.outputs.rows}}
  make:
    type: command
    component: ./components/make.yml
    inputs:
      n: ${{parent.inputs.n}}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def tiny_pipeline(root: Path, pipeline: str = PIPELINE_YML) -> Path:
    """components/{make.yml, make.py, count.yml} and pipeline.yml under root; the pipeline file."""
    write(root, "components/make.yml", MAKE_YML)
    write(root, "components/make.py", MAKE_PY)
    write(root, "components/count.yml", COUNT_YML)
    return write(root, "pipeline.yml", pipeline)
