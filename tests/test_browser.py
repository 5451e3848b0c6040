"""The teaching page in a real headless Chromium (Debian's chromium + chromium-driver).

Cookies are a browser's business: HttpOnly, SameSite, expiry, the `__Host-`
prefix and framing rules are checked where they are enforced, in the browser.
"""

import http.server
import os
import shutil
import threading

import pytest

from support import proxy
from support.basics import skip_unless
from support.realhttp import Client, start_service
from support.wireserver import free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def missing():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) and os.access(path, os.X_OK)):
            return f"{path} is missing: apt-get install chromium chromium-driver"
    return None


def start_browser(profile, *flags):
    skip_unless(missing())
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 f"--user-data-dir={profile}", "--window-size=1000,900", *flags):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, CSP reports included
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser(tmp_path):
    driver = start_browser(tmp_path / "profile")
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


@pytest.fixture
def site():
    child = start_service()
    yield f"http://127.0.0.1:{child.port}"
    child.kill()


def submit(browser, form_action):
    """Click the form's button and wait until the next page has replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
    from selenium.common.exceptions import WebDriverException
    old_page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, f'form[action="{form_action}"] button').click()

    def replaced(driver):
        try:
            return expected_conditions.staleness_of(old_page)(driver)
        except WebDriverException as exc:  # chromedriver, mid-navigation, can say "stale" this way (seen once in CI)
            if "does not belong to the document" in str(exc):
                return True
            raise
    WebDriverWait(browser, 15).until(replaced)
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


def csp_reports(browser):
    """Console messages about the Content Security Policy since the last call."""
    return [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]


def test_the_page_sends_its_security_headers():
    child = start_service()
    try:
        response = Client("127.0.0.1", child.port).get("/")
    finally:
        child.kill()
    headers = {name.lower(): value for name, value in response.headers}
    directives = {d.split()[0]: d.split()[1:] for d in headers.get("content-security-policy", "").split(";") if d.strip()}
    assert directives.get("script-src", directives.get("default-src")) == ["'none'"], directives  # no scripts
    assert directives.get("frame-ancestors") == ["'none'"] and directives.get("form-action") == ["'self'"]
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("referrer-policy") == "same-origin"


def test_a_visitor_signs_in_stays_in_and_signs_out(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    # Open the page: logged out, a form. (It comes with its CSP: the test above.)
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

    # The page's own policy blocked nothing of the page on the way (its style, its forms).
    assert csp_reports(browser) == []


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


@pytest.fixture
def other_origin(site):
    """Another site (another port of 127.0.0.1) whose page frames the teaching page, and,
    as the control, the service's /healthz, which has no frame-ancestors rule."""
    page = (f'<!doctype html><title>elsewhere</title><iframe id="page" src="{site}/"></iframe>'
            f'<iframe id="control" src="{site}/healthz"></iframe>').encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_another_site_cannot_frame_the_page(browser, other_origin):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(other_origin)
    WebDriverWait(browser, 15).until(lambda b: b.execute_script("return document.readyState") == "complete")

    def frame_document(frame_id):
        # WebDriver may enter a cross-origin frame (page scripts may not): what did the frame load?
        browser.switch_to.frame(browser.find_element(By.ID, frame_id))
        try:
            return browser.execute_script("return [document.URL, document.body ? document.body.innerText : '']")
        finally:
            browser.switch_to.default_content()

    # The control frame loads: framing works in this setup, so a blocked frame means the page's rule.
    url, text = WebDriverWait(browser, 15).until(lambda b: (d := frame_document("control"))[1] and d)
    assert url.endswith("/healthz") and "ok" in text.lower(), (url, text)
    # The teaching page's frame holds Chromium's error page instead, and the console says why.
    url, text = frame_document("page")
    assert url.startswith("chrome-error://") and "Your browser sent no session cookie." not in text, (url, text)
    assert any("frame-ancestors 'none'" in message for message in csp_reports(browser))


# --- The `__Host-` cookie, in Chromium, over HTTPS through deploy/nginx.conf ---

@pytest.fixture
def tls_site(tmp_path):
    """service.py with a `__Host-sid` cookie behind nginx; yields (https URL, TLS material)."""
    skip_unless(proxy.missing())
    tls = proxy.make_certificates(tmp_path)
    port = free_port()
    child = start_service({"PORT": str(port), "SESSION_COOKIE_NAME": "__Host-sid", "COOKIE_SECURE": "true",
                           "TRUST_PROXY": "127.0.0.1"})
    try:
        nginx = proxy.start_nginx(tmp_path, free_port(), [port] * 3, tls)  # one instance, named three times
        try:
            yield f"https://127.0.0.1:{nginx.port}", tls
        finally:
            proxy.stop_nginx(nginx)
    finally:
        child.kill()


def test_a_host_prefixed_cookie_is_path_root_secure_and_host_only(tls_site):
    site, tls = tls_site
    client = proxy.tls_client(int(site.rsplit(":", 1)[1]), tls)
    [set_cookie] = client.post("/", {"name": "Alice"}).set_cookies()
    name, attributes = set_cookie.split("=", 1)[0], [a.strip().lower() for a in set_cookie.split(";")[1:]]
    assert name == "__Host-sid" and "path=/" in attributes and "secure" in attributes, set_cookie
    assert not any(a.startswith("domain") for a in attributes), set_cookie
    assert client.get("/name").json() == {"name": "Alice"}
    [cleared] = client.post("/logout").set_cookies()  # cleared with the same attributes, or a browser keeps it
    assert cleared.startswith("__Host-sid=") and "Path=/" in cleared and "Secure" in cleared, cleared


def test_chromium_keeps_a_host_prefixed_cookie_over_https(tls_site, tmp_path):
    site, tls = tls_site
    # Trust exactly the test certificate's key, nothing else (needs --user-data-dir, which start_browser sets).
    browser = start_browser(tmp_path / "tls-profile", f"--ignore-certificate-errors-spki-list={tls['spki']}")
    try:
        browser.get(site + "/")
        assert "Your browser sent no session cookie." in page_text(browser)
        sign_in(browser, "Alice")
        assert "Signed in as Alice." in page_text(browser)
        # Chromium stores a __Host- cookie only if it is Secure, Path=/, has no Domain and came over HTTPS.
        [cookie] = [c for c in browser.get_cookies() if c["name"] == "__Host-sid"]
        assert cookie["secure"] is True and cookie["path"] == "/" and cookie["httpOnly"] is True
        assert cookie["domain"] == "127.0.0.1"  # host-only: no leading dot, no Domain attribute
        browser.get(site + "/name")
        assert '"name": "Alice"' in page_text(browser)
        # Sign out: the clearing cookie must meet the same rules, or Chromium would keep the old one.
        browser.get(site + "/")
        submit(browser, "/logout")
        assert [c for c in browser.get_cookies() if c["name"] == "__Host-sid"] == []
    finally:
        browser.quit()


# --- The page explains itself: sessions, a tampered cookie, a logout, an outage ---

def test_the_page_explains_your_sessions_a_tampered_cookie_and_a_logout(browser, site, tmp_path):
    browser.get(site + "/")
    sign_in(browser, "Alice")
    text = page_text(browser)
    assert "You signed in" in text and "Your sessions" in text and "(this browser)" in text
    assert "signed in" in text and "idle deadline" in text and "absolute deadline" in text
    browser.save_screenshot(str(tmp_path / "signed-in.png"))

    # One character of the signature changed, as an attacker guessing a cookie would.
    [cookie] = [c for c in browser.get_cookies() if c["name"] == "example.sid"]
    tampered = cookie["value"][:-1] + ("A" if cookie["value"][-1] != "A" else "B")
    browser.delete_cookie("example.sid")
    browser.add_cookie({"name": "example.sid", "value": tampered, "path": "/"})
    browser.refresh()
    assert "the signature did not verify" in page_text(browser)
    assert "this server did not issue this cookie" in page_text(browser)

    # The real cookie back, then a logout through the form.
    browser.delete_cookie("example.sid")
    browser.add_cookie({"name": "example.sid", "value": cookie["value"], "path": "/", "httpOnly": True})
    browser.refresh()
    assert "Signed in as Alice." in page_text(browser)
    submit(browser, "/logout")  # the first form: Log out
    assert "the document was deleted and your browser was told to forget the cookie" in page_text(browser)
    assert csp_reports(browser) == []


def test_the_page_during_a_store_outage_says_what_happened(browser, tmp_path):
    from support.wireserver import start_wire_server
    wire = start_wire_server()  # its own: this test kills it
    child = start_service({"MONGO_URL": wire.url + "db?timeoutMS=1000"})
    try:
        browser.get(f"http://127.0.0.1:{child.port}/")
        sign_in(browser, "Alice")
        assert "Signed in as Alice." in page_text(browser)
        wire.kill()
        browser.refresh()
        text = page_text(browser)
        assert "The session store is unavailable" in text and "503 Service Unavailable" in text
        browser.save_screenshot(str(tmp_path / "outage.png"))
    finally:
        child.kill()
        wire.kill()
