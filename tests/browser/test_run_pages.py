"""The run pages in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
what a user sees of a failed run, a display() table, a run finishing and a run cancelled while the
page is open, an XSS probe, and a browser that has not signed in. Each test saves a screenshot in its
tmp folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import NotebookTask, SubmitTask

from aml_databricks.workspace import LocalWorkspace
from aml_databricks.workspace.pages.auth import login_url
from tests.fixtures_workspace import upload_notebook

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra has it)")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.server,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no chromium + chromedriver on PATH (apt-get install chromium chromium-driver)"),
]

SEP = "\n\n# COMMAND ----------\n\n"
PATIENCE = 60  # seconds a page may take to show what the test waits for on a loaded machine


def _new_browser() -> Any:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def browser(workspace: LocalWorkspace) -> Iterator[Any]:
    driver = _new_browser()
    try:
        driver.get(login_url(workspace.host, workspace.token))
        yield driver
    finally:
        driver.quit()


def start(client: WorkspaceClient, path: str, source: str) -> int:
    upload_notebook(client, path, source)
    task = SubmitTask(task_key="main", notebook_task=NotebookTask(notebook_path=path), existing_cluster_id="local")
    run_id = client.jobs.submit(run_name=path, tasks=[task]).run_id
    assert run_id is not None
    return run_id


def finished(client: WorkspaceClient, path: str, source: str) -> int:
    run_id = start(client, path, source)
    client.jobs.wait_get_run_job_terminated_or_skipped(run_id)
    return run_id


def wait_for(browser: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, PATIENCE, poll_frequency=0.2).until(condition)


def text_of(browser: Any, selector: str) -> str:
    """The rendered text of an element, read in one step: the page may swap its body between two."""
    text = browser.execute_script("var e = document.querySelector(arguments[0]); return e && e.innerText;", selector)
    if text is None:
        raise AssertionError(f"nothing on the page matches {selector}")
    return str(text)


def click(browser: Any, selector: str) -> None:
    """A real click, tried again if the refresh replaced the element between finding and clicking it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def clicked(b: Any) -> bool:
        b.find_element(By.CSS_SELECTOR, selector).click()
        return True

    WebDriverWait(browser, PATIENCE, ignored_exceptions=[StaleElementReferenceException]).until(clicked)


def test_failed_run_shows_the_error_at_its_cell(browser: Any, client: WorkspaceClient, workspace: LocalWorkspace,
                                                tmp_path: Path) -> None:
    source = SEP.join(['x = 1\nprint("setup done")', 'raise ValueError("bad input in cell two")', 'print("after")'])
    run_id = finished(client, "/Shared/browser/fails", source)

    browser.get(f"{workspace.host}/runs/{run_id}")
    browser.save_screenshot(str(tmp_path / "failed-run.png"))

    assert text_of(browser, "#life-cycle") == "TERMINATED" and text_of(browser, "#result") == "FAILED"
    assert "setup done" in text_of(browser, "#cell-0")
    failed = text_of(browser, "#cell-1 .error")
    assert "ValueError: bad input in cell two" in failed and "cell 2" in failed
    assert "not run" in text_of(browser, "#cell-2") and "after" not in text_of(browser, "#cell-2 .cell-head")
    in_view = browser.execute_script(
        "var r = document.querySelector('#cell-1').getBoundingClientRect();"
        "return r.top < window.innerHeight && r.bottom > 0;")
    assert in_view


def test_display_table_values_are_shown(browser: Any, client: WorkspaceClient, workspace: LocalWorkspace,
                                        tmp_path: Path) -> None:
    source = 'import pandas as pd\ndisplay(pd.DataFrame({"product": ["kettle", "lamp"], "units": [41, 7]}))'
    run_id = finished(client, "/Shared/browser/table", source)

    browser.get(f"{workspace.host}/runs/{run_id}")
    browser.save_screenshot(str(tmp_path / "display-table.png"))

    table = text_of(browser, "#cell-0 table.display")
    assert "product" in table and "kettle" in table and "41" in table and "lamp" in table
    assert "2 rows" in text_of(browser, "#cell-0 .rows")


def test_running_run_turns_terminated_without_a_reload(browser: Any, client: WorkspaceClient,
                                                       workspace: LocalWorkspace, tmp_path: Path) -> None:
    marker = Path(tmp_path / "go")
    source = SEP.join([
        'print("waiting")',
        f'import os, time\nwhile not os.path.exists({str(marker)!r}):\n    time.sleep(0.1)\nprint("released")',
    ])
    run_id = start(client, "/Shared/browser/finishes", source)
    browser.get(f"{workspace.host}/runs/{run_id}")
    wait_for(browser, lambda b: b.execute_script(
        "var e = document.querySelector('#life-cycle'); return e && e.innerText;") == "RUNNING")
    browser.execute_script("window.pageIdentity = 'same page';")
    browser.save_screenshot(str(tmp_path / "running.png"))

    marker.write_text("go")
    wait_for(browser, lambda b: text_of(b, "#life-cycle") == "TERMINATED")
    browser.save_screenshot(str(tmp_path / "terminated.png"))

    assert browser.execute_script("return window.pageIdentity;") == "same page"
    assert text_of(browser, "#result") == "SUCCESS" and "released" in text_of(browser, "#cell-1")


def test_cancel_a_running_run_from_its_page(browser: Any, client: WorkspaceClient, workspace: LocalWorkspace,
                                            tmp_path: Path) -> None:
    run_id = start(client, "/Shared/browser/endless", "import time\nwhile True:\n    time.sleep(0.1)")
    browser.get(f"{workspace.host}/runs/{run_id}")
    wait_for(browser, lambda b: b.execute_script(
        "var e = document.querySelector('#life-cycle'); return e && e.innerText;") == "RUNNING")

    click(browser, "#cancel")
    wait_for(browser, lambda b: text_of(b, "#life-cycle") == "TERMINATED")
    browser.save_screenshot(str(tmp_path / "cancelled.png"))

    assert text_of(browser, "#result") == "CANCELED"
    run = client.jobs.get_run(run_id)
    assert run.state is not None and run.state.result_state is not None
    assert run.state.result_state.value == "CANCELED"


def test_xss_probe_shows_its_script_as_text(browser: Any, client: WorkspaceClient, workspace: LocalWorkspace,
                                            tmp_path: Path) -> None:
    source = SEP.join([
        'print("<script>window.pwned = 1</script><b>bold?</b>")',
        'displayHTML("<p id=inside>html output</p><script>parent.document.title = \'pwned\'</script>")',
    ])
    run_id = finished(client, "/Shared/browser/xss", source)

    browser.get(f"{workspace.host}/runs/{run_id}")
    browser.save_screenshot(str(tmp_path / "xss.png"))

    assert "<script>window.pwned = 1</script><b>bold?</b>" in text_of(browser, "#cell-0 .output")
    assert browser.execute_script("return window.pwned;") is None
    assert browser.title != "pwned"
    frame = browser.find_element("css selector", "#cell-1 iframe.html-output")
    assert frame.get_attribute("sandbox") == "allow-scripts"
    browser.switch_to.frame(frame)
    try:
        assert text_of(browser, "#inside") == "html output"
    finally:
        browser.switch_to.default_content()


def test_runs_list_filters_and_links_to_the_workspace_browser(browser: Any, client: WorkspaceClient,
                                                               workspace: LocalWorkspace, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    run_id = finished(client, "/Shared/browser/listed_report", 'print("listed")  # a comment')

    browser.get(f"{workspace.host}/?name=listed_rep")
    browser.save_screenshot(str(tmp_path / "runs-list.png"))
    rows = text_of(browser, "table.runs")
    assert str(run_id) in rows and "/Shared/browser/listed_report" in rows and "/Shared/browser/fails" not in rows

    browser.find_element(By.LINK_TEXT, "Workspace").click()
    browser.find_element(By.LINK_TEXT, "Shared").click()
    browser.find_element(By.LINK_TEXT, "browser").click()
    browser.find_element(By.LINK_TEXT, "listed_report").click()
    browser.save_screenshot(str(tmp_path / "notebook.png"))
    assert 'print("listed")' in text_of(browser, "#source")
    comments = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#source .tok-com")]
    assert "# a comment" in comments  # highlighted as a comment


def test_a_browser_without_the_token_sees_no_run_content(client: WorkspaceClient, workspace: LocalWorkspace,
                                                         tmp_path: Path) -> None:
    run_id = finished(client, "/Shared/browser/secret_output", 'print("confidential figures 4242")')
    stranger = _new_browser()
    try:
        for page in (f"/runs/{run_id}", f"/runs/{run_id}/body", "/", "/workspace/Shared/browser"):
            stranger.get(workspace.host + page)
            assert "4242" not in stranger.page_source and "secret_output" not in stranger.page_source
        stranger.get(f"{workspace.host}/runs/{run_id}")
        stranger.save_screenshot(str(tmp_path / "signed-out.png"))
        assert "/login" in stranger.current_url and "Sign in" in stranger.page_source
    finally:
        stranger.quit()
