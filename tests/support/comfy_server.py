"""Starting and stopping a real ComfyUI server (main.py --cpu) with this pack in custom_nodes/."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from support.comfy_harness import COMFY_ROOT
from support.common import REPO

CHROMIUM = "/usr/bin/chromium"
# flags for a closed network: no background connections, no component updates
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, data=None, timeout=10):
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


PACK_FOLDER = "lediff-hdr"  # the README's clone command's folder name (test_docs checks they agree)


class ComfyServer:
    def __init__(self, base, extra_args=()):
        self.base = str(base)
        for d in ("custom_nodes", "models", "input", "output", "temp", "user"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        link = os.path.join(self.base, "custom_nodes", PACK_FOLDER)
        if not os.path.islink(link):
            os.symlink(REPO, link)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.base, "server.log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--disable-auto-launch", "--base-directory", self.base, "--database-url", "sqlite:///:memory:",
             *extra_args],
            cwd=COMFY_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                get_json(self.url + "/system_stats", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"ComfyUI did not start in 180 s:\n{self.log()[-4000:]}") from None
                time.sleep(0.5)

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def get(self, path):
        return get_json(self.url + path)

    def post(self, path, data):
        return get_json(self.url + path, data)

    def wait_for_history(self, prompt_id, timeout=300):
        deadline = time.monotonic() + timeout
        while True:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
                return history[prompt_id]
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")
            time.sleep(0.2)

    def set_settings(self, settings: dict):
        """Store user settings (``/settings/{id}``) as the frontend does; a page loaded afterwards
        starts with them."""
        for key, value in settings.items():
            req = urllib.request.Request(f"{self.url}/settings/{key}", data=json.dumps(value).encode(),
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).close()
        stored = self.get("/settings")
        assert all(stored.get(k) == v for k, v in settings.items()), stored

    def queue_in_page(self, page, timeout=300) -> dict:
        """Queue the graph loaded in the frontend ``page`` as a user does (``app.queuePrompt``),
        failing on validation errors, and return its finished history entry. The prompt id is the
        one the server answers the frontend's ``POST /prompt`` with."""
        def is_prompt_post(response):
            return response.request.method == "POST" and response.url.split("?")[0].endswith("/prompt")

        with page.expect_response(is_prompt_post, timeout=60000) as response:
            page.evaluate("() => app.queuePrompt(0, 1)")
        answer = response.value.json()
        assert response.value.ok and "prompt_id" in answer, f"not queued: {answer}"
        assert not answer.get("node_errors"), f"validation errors: {answer['node_errors']}"
        return self.wait_for_history(answer["prompt_id"], timeout)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def console_error(message) -> str | None:
    """The default of ``frontend_page``'s ``console_errors``: every console error, its text."""
    return message.text if message.type == "error" else None


def wait_for_app(page) -> None:
    """Wait until the page's ComfyUI app is loaded (after a goto or a reload); close the start-up
    dialog."""
    page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120000)
    page.keyboard.press("Escape")


@contextlib.contextmanager
def frontend_page(server: ComfyServer, extra_args=(), console_errors=console_error):
    """The server's frontend in headless Chromium (Debian's, driven by Playwright), the app loaded
    and the start-up dialog closed. Yields ``(page, errors)``: ``errors`` collects the page's
    uncaught errors and what ``console_errors`` makes of each console message (None: ignored)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: run scripts/setup.sh (installs Debian's chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: (e := console_errors(m)) is not None and errors.append(e))
            page.goto(server.url, wait_until="networkidle", timeout=120000)
            wait_for_app(page)
            yield page, errors
        finally:
            browser.close()
