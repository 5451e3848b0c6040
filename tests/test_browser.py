"""The teaching page in a real headless Chromium (Debian's chromium + chromium-driver).

Cookies are a browser's business: HttpOnly, SameSite and expiry are checked
where they are enforced, in the browser's own cookie jar.
"""

import os
import shutil

import pytest

from conftest import skip_unless
from realhttp import ServiceProcess

pytestmark = pytest.mark.timeout(120)
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def missing():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) and os.access(path, os.X_OK)):
            return f"{path} is missing: apt-get install chromium chromium-driver"
    return None


@pytest.fixture
def browser(tmp_path):
    skip_unless(missing())
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


@pytest.fixture
def site():
    process = ServiceProcess()
    yield f"http://127.0.0.1:{process.port}"
    process.kill()


def submit(browser, form_action):
    """Click the form's button and wait until the next page has replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
    old_page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, f'form[action="{form_action}"] button').click()
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(old_page))
    WebDriverWait(browser, 15).until(lambda b: b.execute_script("return document.readyState") == "complete")


def sign_in(browser, name):
    from selenium.webdriver.common.by import By
    field = browser.find_element(By.NAME, "name")
    field.clear()
    field.send_keys(name)
    submit(browser, "/")


def page_text(browser):
    from selenium.webdriver.common.by import By
    return browser.find_element(By.TAG_NAME, "body").text


def test_a_visitor_signs_in_stays_in_and_signs_out(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    # Open the page: logged out, a form.
    browser.get(site + "/")
    assert "Your browser sent no session cookie." in page_text(browser)

    # Sign in through the form: the 303 brings us back, signed in.
    sign_in(browser, "Alice")
    assert "Signed in as Alice." in page_text(browser)
    assert "the signature verified" in page_text(browser)
    browser.save_screenshot(str(tmp_path / "logged-in.png"))
    assert (tmp_path / "logged-in.png").stat().st_size > 1000

    # Reload: still signed in.
    browser.refresh()
    assert "Signed in as Alice." in page_text(browser)

    # Page scripts cannot see the cookie; the browser's jar has it, HttpOnly and SameSite=Lax.
    assert "example.sid" not in browser.execute_script("return document.cookie")
    [cookie] = [c for c in browser.get_cookies() if c["name"] == "example.sid"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert cookie["value"].startswith("s%3A") and "expiry" in cookie

    # Sign out: the form again, and the cookie gone from the jar.
    submit(browser, "/logout")
    assert "Your browser sent no session cookie." in page_text(browser)
    assert browser.find_element(By.NAME, "name")
    assert [c for c in browser.get_cookies() if c["name"] == "example.sid"] == []


def test_html_in_a_name_shows_as_text(browser, site):
    browser.get(site + "/")
    sign_in(browser, "<script>document.title='pwned'</script><b>Mallory</b>")
    assert "Signed in as <script>document.title='pwned'</script><b>Mallory</b>." in page_text(browser)
    assert browser.title == "Sessions, seen from the server"
    from selenium.webdriver.common.by import By
    assert browser.find_elements(By.CSS_SELECTOR, "strong b") == []


def test_a_failed_form_login_shows_the_error(browser, site):
    browser.get(site + "/")
    sign_in(browser, "   ")  # passes the browser's `required`, fails the server's trim
    assert "name must be a string of 1 to 100 characters" in page_text(browser)
    assert browser.get_cookies() == []
