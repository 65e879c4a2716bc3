"""The page for people, in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, which .ci/run installs) driven through WebDriver (selenium). Loads
an identifier's page, reads what a person sees, follows links."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import Tenant
from tests.registry.test_templates import template

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER) and not os.environ.get("CI"):
    pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and DRIVER, "chromium and chromedriver are needed here (CI installs them)"
    profile = tempfile.mkdtemp(prefix="idres-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_a_person_reads_an_identifier_and_follows_its_links(tenant: Tenant, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    tpl = template(tenant, "TPL-ASSET", [
        {"type": "asset.location", "description": "where the asset stands"}])
    hostile = "<script>document.title='owned'</script>"
    r = requests.put(tenant.handle_url("PUMP-7") + "?template=" + tpl, headers=tenant.op.bearer,
                     json=[{"index": 1, "type": "asset.location", "data": f"hall B {hostile}"}])
    assert r.status_code == 201, r.text
    browser.get(f"{tenant.url}/{tenant.prefix}/PUMP-7?noredirect")
    assert browser.title == f"{tenant.prefix}/PUMP-7 (identifier)"      # no script ran
    assert browser.find_element(By.TAG_NAME, "h1").text == f"{tenant.prefix}/PUMP-7"
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "tbody td")]
    assert cells[0] == "1" and cells[1] == "asset.location\nwhere the asset stands"
    assert cells[2] == f"hall B {hostile}" and cells[3] == "86400"     # shown as text
    assert browser.find_element(By.TAG_NAME, "caption").text == f"Values of {tenant.prefix}/PUMP-7"
    if os.environ.get("IDRES_SCREENSHOTS"):    # to look at it: a folder for the PNG
        browser.save_screenshot(os.path.join(os.environ["IDRES_SCREENSHOTS"], "record.png"))
    # follow the link to the JSON form
    browser.find_element(By.LINK_TEXT, "This record as JSON").click()
    assert browser.current_url == f"{tenant.url}/api/handles/{tenant.prefix}/PUMP-7"
    assert '"responseCode":1' in browser.find_element(By.TAG_NAME, "body").text
    # back, and to the template the record follows: its own page
    browser.back()
    browser.find_element(By.LINK_TEXT, tpl).click()
    assert browser.find_element(By.TAG_NAME, "h1").text == tpl
    assert "idres.template" in browser.find_element(By.TAG_NAME, "table").text
    # an unknown identifier: a page that says so
    browser.get(f"{tenant.url}/{tenant.prefix}/NO-SUCH")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert f"{tenant.prefix}/NO-SUCH" in browser.find_element(By.TAG_NAME, "p").text
