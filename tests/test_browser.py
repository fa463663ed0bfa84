"""Every page of the book this run rendered, opened in headless Chromium as a reader would
open it: served over HTTP from 127.0.0.1, with the run's own outputs. A page fails on a
JavaScript error, an image that did not load, a figure without alt text, a cell output
holding a Python traceback, a solution shown open, a link to a page or anchor of the
book that does not exist, or a machine path or numpy repr in an output."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from labsupport import toc

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["index", *toc.toc_files(ROOT)]
CHROMIUM = next((p for p in ("chromium", "chromium-browser", "google-chrome") if shutil.which(p)),
                None)
DRIVER = shutil.which("chromedriver")
HOW_TO_GET = ("install Chromium and its driver to run it: `sudo apt-get install chromium "
              "chromium-driver` (Debian/Ubuntu) or `brew install --cask chromium chromedriver` "
              "(macOS)")


@pytest.fixture(scope="session")
def site(book_run: Path) -> Iterator[tuple[str, Path]]:
    """The run's HTML served on a free loopback port."""
    html = book_run / "_build" / "html"
    handler = functools.partial(QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", html
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not (CHROMIUM and DRIVER):
        pytest.skip(f"browser check skipped: no Chromium on this machine; {HOW_TO_GET}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which(CHROMIUM)
    # this machine reaches no network but loopback: keep Chromium from trying
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


# what a reader should never see in a cell's output: a scratch folder (with the kernel's pid) or
# numpy's repr of a number instead of the number
NOISE = re.compile(r"\S*mlsdp-lab/\S*|\S*-pid\d+\S*|np\.(?:float|int)\d+\([^)]*\)")

PAGE_FACTS = """
const imgs = [...document.querySelectorAll('article img, main img')];
const outputs = [...document.querySelectorAll('.cell_output, .output')];
return {
  broken_images: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
  no_alt: imgs.filter(i => !(i.getAttribute('alt') || '').trim()).map(i => i.src),
  tracebacks: outputs.filter(o => /Traceback \\(most recent call last\\)/.test(o.innerText)
                             || o.classList.contains('traceback') || o.querySelector('.traceback'))
                     .map(o => o.innerText.slice(0, 300)),
  open_details: [...document.querySelectorAll('article details[open]')]
                 .map(d => (d.querySelector('summary') || d).innerText.slice(0, 80)),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  figures: imgs.length,
  output_text: outputs.map(o => o.innerText).join(' | '),
};
"""


def internal_link_problems(url: str, links: list[str], base: str, html: Path) -> list[str]:
    problems = []
    for link in links:
        if not link.startswith(base):
            continue  # another site, or mailto: the book makes no claim about those
        parsed = urlparse(link)
        path = unquote(parsed.path)
        target = html / path.lstrip("/")
        if path.endswith("/"):
            target = target / "index.html"
        if not target.exists():
            problems.append(f"broken link {link}")
        elif parsed.fragment and target.suffix == ".html" and link.split("#")[0] != url:
            text = target.read_text(errors="replace")
            if f'id="{parsed.fragment}"' not in text:
                problems.append(f"missing anchor {link}")
    return problems


@pytest.mark.parametrize("page", PAGES)
def test_page(page: str, site: tuple[str, Path], browser: object) -> None:
    base, html = site
    url = urljoin(base, f"{page}.html")
    browser.get_log("browser")  # forget what earlier pages logged
    browser.get(url)
    facts = browser.execute_script(PAGE_FACTS)
    errors = [entry["message"] for entry in browser.get_log("browser")
              if entry["level"] == "SEVERE"]
    problems = [f"JavaScript error: {e}" for e in errors]
    problems += [f"image did not load: {src}" for src in facts["broken_images"]]
    problems += [f"figure without alt text: {src}" for src in facts["no_alt"]]
    problems += [f"traceback in an output: {t}" for t in facts["tracebacks"]]
    problems += [f"solution or details shown open: {d}" for d in facts["open_details"]]
    problems += [f"machine path or numpy repr shown: {m.group(0)}"
                 for m in NOISE.finditer(facts["output_text"])]
    own_anchors = set(facts["ids"])
    problems += [f"missing anchor on the page: {link}" for link in facts["links"]
                 if link.startswith(url + "#") and urlparse(link).fragment
                 and unquote(urlparse(link).fragment) not in own_anchors]
    problems += internal_link_problems(url, facts["links"], base, html)
    assert not problems, f"{page}.html:\n" + "\n".join(problems[:20])


EDGE_PAGE = "notebooks/serving/edge-prediction"


@pytest.mark.skipif(EDGE_PAGE not in PAGES, reason="the edge chapter is not in the toc")
def test_in_page_predictions_equal_the_servers(site: tuple[str, Path], browser: object) -> None:
    """serving/edge-prediction runs its model in the page with onnxruntime-web (vendored in
    book/_static): every test digit must get the label the chapter's server gave it."""
    import time

    from selenium.webdriver.common.by import By

    base, _ = site
    browser.get(urljoin(base, f"{EDGE_PAGE}.html"))
    deadline = time.monotonic() + 60
    status = browser.find_element(By.ID, "edge-browser-check")
    while status.get_attribute("data-state") == "loading" and time.monotonic() < deadline:
        time.sleep(0.2)
    state, text = status.get_attribute("data-state"), status.text
    assert state == "done", f"the in-browser model did not finish: {state}: {text}"
    agree, total = int(status.get_attribute("data-agree")), int(status.get_attribute("data-total"))
    assert total > 0 and agree == total, text
    # the reader's side works too: a typed input of the wrong length is named, not run
    browser.find_element(By.ID, "edge-typed").clear()
    browser.find_element(By.ID, "edge-typed").send_keys("1, 2, 3")
    browser.find_element(By.ID, "edge-read").click()
    assert "Expected 64 numbers" in browser.find_element(By.ID, "edge-answer").text
