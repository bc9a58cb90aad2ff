"""Headless Chromium for the UI tests, driven over the DevTools protocol on a pipe: stdlib only."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


def chromium_binary() -> str:
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is required in CI (scripts/test installs it: apt-get install -y chromium)")
    pytest.skip("chromium not installed: apt-get install -y chromium")


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): stdlib only."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def on_fds_3_and_4() -> None:  # the pipe protocol: Chromium reads fd 3 and writes fd 4
            # (via fds >= 10 first, in case a pipe end already sits on 3 or 4)
            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(r, 3)  # dup2 makes them inheritable: they survive the exec
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--window-size=1280,1600", "--remote-debugging-pipe", "about:blank"],
            close_fds=False, preexec_fn=on_fds_3_and_4, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._id = b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=1280, height=1600, deviceScaleFactor=1,
                  mobile=False)

    def call(self, method: str, session: bool = False, timeout: float = 20, **params: Any) -> dict[str, Any]:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                if not select.select([self._from_chrome], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    raise TimeoutError(f"chromium did not answer {method} in {timeout} s")
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:  # anything else is an event we do not need
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def js(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if value := self.js(expression):
                    return value
            except RuntimeError as err:
                # The page is navigating (a sign-in redirect) while the expression is evaluated: the
                # next poll asks the new page (seen once on a loaded machine).
                if "navigated or closed" not in str(err) and "context with specified id" not in str(err):
                    raise
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; at {self.js('location.href')}")

    def type_into(self, selector: str, text: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", session=True, text=text)  # real input events, as a person typing

    def sign_in(self, url: str, user: str, password: str, timeout: float = 20) -> None:
        """Open `url` signed out: it must send the browser to Airflow's login form, filled in and
        submitted here as a person would."""
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("location.pathname === '/auth/login' && !!document.querySelector('input[name=password]')",
                      "Airflow's login form", timeout=timeout)
        self.type_into("input[name=username]", user)
        self.type_into("input[name=password]", password)
        self.wait_for("!document.querySelector('button[type=submit]').disabled", "the sign-in button")
        self.js("document.querySelector('button[type=submit]').click()")

    def screenshot(self, path: Path) -> None:
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        shot = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": 1280, "height": size["height"], "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
