"""Makes docs/img/run-page.png: a local workspace without Spark, one notebook run, its page in headless Chromium.

Run from the repository root: `.venv/bin/python docs/img/run_page_screenshot.py` (needs chromium, chromedriver).
"""

import shutil
import sys
import tempfile
from pathlib import Path

from databricks.sdk.service.jobs import NotebookTask, SubmitTask
from databricks.sdk.service.workspace import ImportFormat, Language
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from aml_databricks.workspace import LocalWorkspace
from aml_databricks.workspace.pages.auth import login_url

SEP = "\n\n# COMMAND ----------\n\n"
NOTEBOOK = "# Databricks notebook source\n" + SEP.join([
    'dbutils.widgets.text("region", "north")\nregion = dbutils.widgets.get("region")\nprint(f"sales for {region}")',
    'import pandas as pd\nsales = pd.DataFrame({"product": ["kettle", "lamp", "chair"], "units": [41, 7, 12],'
    ' "price": [24.5, 39.0, 80.0]})\ndisplay(sales)',
    'total = (sales.units * sales.price).sum()\nassert total < 1000, f"total {total} over budget"',
    'dbutils.notebook.exit(str(total))',
])


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/run-page.png")
    with tempfile.TemporaryDirectory() as data, LocalWorkspace(Path(data), spark=False) as ws:
        ws.client.workspace.upload("/Shared/sales_report", NOTEBOOK.encode(), format=ImportFormat.SOURCE,
                                   language=Language.PYTHON, overwrite=True)
        task = SubmitTask(task_key="report", existing_cluster_id="local",
                          notebook_task=NotebookTask(notebook_path="/Shared/sales_report",
                                                     base_parameters={"region": "west"}))
        run = ws.client.jobs.submit(run_name="sales report", tasks=[task]).result()
        options = Options()
        options.binary_location = str(shutil.which("chromium"))
        for argument in ("--headless=new", "--no-sandbox", "--window-size=1000,1350", "--hide-scrollbars"):
            options.add_argument(argument)
        browser = webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=options)
        try:
            browser.get(login_url(ws.host, ws.token))
            browser.get(f"{ws.host}/runs/{run.run_id}")
            browser.execute_script("window.scrollTo(0, 0)")
            browser.save_screenshot(str(target))
        finally:
            browser.quit()


if __name__ == "__main__":
    main()
