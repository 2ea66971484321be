"""The console page in headless Chromium: noVNC shows the tiny guest's screen, and typing reaches the guest."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.test import Client

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT
from tests.console.conftest import REPO, child_env
from tests.fixtures.processes import free_port, stop, wait_for_port

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


# The canvas as (number of distinct colours, number of lit pixels), read in the page.
CANVAS_JS = """() => {
  const canvas = document.querySelector('#console-screen canvas');
  if (!canvas || !canvas.width) return null;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set();
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) {
    const v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    colours.add(v);
    if (data[i] + data[i + 1] + data[i + 2] > 192) lit++;
  }
  return [colours.size, lit];
}"""
# Lit pixels that the typed command and its output (two lines of text) add at least; a blinking cursor
# changes far fewer.
TYPED_PIXELS = 500
# Playwright's keyboard.type() sends "$" as the Digit4 key without Shift (noVNC sends QEMU key codes):
# type shifted characters as a person does.
SHIFTED = {
    "$": "Shift+Digit4",
    "(": "Shift+Digit9",
    ")": "Shift+Digit0",
    "*": "Shift+Digit8",
    ">": "Shift+Period",
    "S": "Shift+KeyS",
}


def type_like_a_person(page, text: str) -> None:
    """Type `text` key by key, with Shift for the characters that need it on a US keyboard."""
    for char in text:
        if char in SHIFTED:
            page.keyboard.press(SHIFTED[char])
        else:
            page.keyboard.type(char)


@contextlib.contextmanager
def browser_pages(console_site: str, *users) -> Iterator:
    """Headless Chromium with `open_page(user, path)`: a page of the console site logged in as `user`."""
    from playwright.sync_api import sync_playwright

    cookies = {}
    for user in users:  # before Playwright runs its event loop in this thread
        client = Client()
        client.force_login(user)
        cookies[user.pk] = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

        def open_page(user, path: str):
            context = browser.new_context(viewport=VIEWPORT)
            context.add_cookies(
                [
                    {
                        "name": django_settings.SESSION_COOKIE_NAME,
                        "value": cookies[user.pk],
                        "url": console_site,
                    }
                ]
            )
            page = context.new_page()
            page.goto(f"{console_site}{path}")
            return page

        try:
            yield open_page
        finally:
            browser.close()


@pytest.fixture
def console_site(websockify_server, tmp_path) -> Iterator[str]:
    """daphne serving Vireo (console wired in) whose pages point noVNC at the test's websockify."""
    env = child_env(
        DJANGO_SETTINGS_MODULE="project.settings",
        VIREO_CONSOLE_URL=f"ws://127.0.0.1:{websockify_server.port}",
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=REPO, env=env, check=True
    )
    port = free_port()
    log_path = tmp_path / "daphne.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, process, log_path)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()


def test_console_page_shows_and_types_into_the_guest(
    local_vm, tiny_vm, operator, console_site, websockify_server, tmp_path
):
    with browser_pages(console_site, operator) as open_page:
        page = open_page(operator, f"/vms/{local_vm.pk}/console/")
        try:
            page.wait_for_selector("#console-screen[data-state=connected]", timeout=45_000)
            # Alone on the console, the operator has control (presence says so).
            page.wait_for_selector("#console-screen[data-control=true]", timeout=45_000)
            page.wait_for_selector("#console-presence li:has-text('in control')", timeout=45_000)
            # The guest's text screen: more than a blank background.
            page.wait_for_function(f"({CANVAS_JS})()?.[0] > 1", timeout=45_000)
        except Exception:
            print(page.content()[:3000], websockify_server.output(), sep="\n----\n")
            raise
        colours, lit_before = page.evaluate(CANVAS_JS)
        assert colours > 1
        page.click("#console-screen canvas")
        type_like_a_person(page, "echo vireo-$((6*7))")
        page.keyboard.press("Enter")
        page.wait_for_function(f"({CANVAS_JS})()[1] > {lit_before + TYPED_PIXELS}", timeout=45_000)
        # The shell really evaluated what was typed: the same command, to the serial port.
        serial_start = len(tiny_vm.serial_output().encode())
        type_like_a_person(page, "echo vireo-$((6*7)) >/dev/ttyS0")
        page.keyboard.press("Enter")
        try:
            tiny_vm.wait_for_serial("vireo-42", timeout=20, start=serial_start)
        finally:
            page.screenshot(path=str(tmp_path / "console.png"))
        assert page.locator("#console-cad").is_enabled()
        # "Paste as keystrokes": the text is typed into the guest key by key (with Shift where needed).
        serial_start = len(tiny_vm.serial_output().encode())
        page.fill("#console-clipboard", "echo Pasted-$((6*7)) >/dev/ttyS0\n")
        page.click("#console-type")
        tiny_vm.wait_for_serial("Pasted-42", timeout=20, start=serial_start)
        page.click("#console-keys")
        assert page.locator("[data-keys='ctrl alt f2']").is_visible()
        page.keyboard.press("Escape")
        page.click("#console-scale")
        assert page.locator("#console-scale").get_attribute("aria-pressed") == "false"


# The text of the xterm.js screen (its buffer), read in the page.
TERMINAL_TEXT_JS = """() => {
  const buffer = window.vireoSerial.term.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join('\\n');
}"""


def test_serial_console_page_types_into_the_guest_shell(local_vm, operator, console_site, tmp_path):
    with browser_pages(console_site, operator) as open_page:
        page = open_page(operator, f"/vms/{local_vm.pk}/console/serial/")
        try:
            page.wait_for_selector("#serial-terminal[data-state=connected]", timeout=45_000)
            page.wait_for_selector("#serial-presence li:has-text('in control')", timeout=45_000)
            page.click("#serial-terminal")
            page.keyboard.type("echo vireo-$((6*7))")
            page.keyboard.press("Enter")
            page.wait_for_function(f"({TERMINAL_TEXT_JS})().includes('vireo-42')", timeout=45_000)
        finally:
            page.screenshot(path=str(tmp_path / "serial.png"))
        # The terminal fits the window and says its size; the guest can be told it.
        cols, rows = page.evaluate("[window.vireoSerial.term.cols, window.vireoSerial.term.rows]")
        assert cols > 80 and rows > 20
        assert page.inner_text("#serial-size") == f"{cols}×{rows}"
        page.click("#serial-stty")
        page.keyboard.type("stty size")
        page.keyboard.press("Enter")
        page.wait_for_function(f"({TERMINAL_TEXT_JS})().includes('{rows} {cols}')", timeout=45_000)


def test_two_people_on_one_console_see_each_other_and_pass_control(
    local_vm, operator, owner, viewer, console_site, tmp_path
):
    path = f"/vms/{local_vm.pk}/console/"
    with browser_pages(console_site, operator, owner, viewer) as open_page:
        first = open_page(operator, path)
        first.wait_for_selector("#console-screen[data-control=true]", timeout=45_000)
        second = open_page(owner, path)
        third = open_page(viewer, path)
        try:
            second.wait_for_selector("#console-screen[data-state=connected]", timeout=45_000)
            second.wait_for_selector("#console-mode:has-text('watching')", timeout=45_000)
            third.wait_for_selector("#console-screen[data-state=connected]", timeout=45_000)
            third.wait_for_selector("#console-mode:has-text('view only')", timeout=45_000)
            assert third.locator("#console-takeover").is_hidden()
            for page in (first, second, third):
                page.wait_for_function(
                    "document.querySelector('#console-presence').dataset.count === '3'", timeout=45_000
                )
            # The owner takes control: everyone sees it.
            second.click("#console-takeover")
            second.wait_for_selector("#console-screen[data-control=true]", timeout=45_000)
            first.wait_for_selector("#console-screen[data-control=false]", timeout=45_000)
            for page in (first, third):
                page.wait_for_selector(
                    "#console-event:has-text('owner took control of the graphical console')",
                    timeout=45_000,
                )
            # ... and hands it back from the presence list.
            second.click("#console-presence li:has-text('operator') button.handover")
            first.wait_for_selector("#console-screen[data-control=true]", timeout=45_000)
            third.wait_for_selector("#console-event:has-text('handed control')", timeout=45_000)
        finally:
            first.screenshot(path=str(tmp_path / "first.png"))
            third.screenshot(path=str(tmp_path / "third.png"))


def test_vm_page_console_tab_shows_the_guest_screen(
    local_vm, tiny_vm, operator, console_site, websockify_server
):
    """The VM page's Console tab frames the console page, which connects once the tab is shown."""
    with browser_pages(console_site, operator) as open_page:
        page = open_page(operator, f"/vms/{local_vm.pk}/")
        assert page.locator("#console iframe").get_attribute("src") is None  # nothing opened yet
        page.click("#console-tab")
        frame = page.frame_locator("#console iframe")
        try:
            frame.locator("#console-screen[data-state=connected]").wait_for(timeout=45_000)
            page.wait_for_function(
                f"() => ({CANVAS_JS.replace('document', 'document.querySelector(`#console iframe`).contentDocument', 1)})()?.[0] > 1",
                timeout=45_000,
            )
        except Exception:
            print(websockify_server.output())
            raise
