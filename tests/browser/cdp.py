"""A few DevTools-protocol calls to headless Chromium over ``--remote-debugging-pipe`` (stdlib only).

Chromium reads JSON commands from fd 3 and writes replies and events to fd 4, each message ending
in a NUL byte. Enough to open a page, wait for its load event, click at a point and evaluate
expressions (awaiting promises), so a test can click the way a person does and wait on events.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


class Browser:
    def __init__(self, chromium: str, flags: Sequence[str], profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # High copies first, so placing them on fds 3 and 4 cannot clobber one another.
        high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 100)
        high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 100)

        def place() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen(
            [chromium, *flags, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=False,
            preexec_fn=place,
        )
        for fd in (to_chrome_r, from_chrome_w, high_r, high_w):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def call(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        """Send one command and return its result, skipping events; raise on a protocol error."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_chrome, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe: " + self._stderr())
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(raw)
        return parsed

    def _stderr(self) -> str:
        self.process.kill()
        return (self.process.communicate()[1] or b"")[-2000:].decode(errors="replace")

    def open(self, url: str) -> None:
        """A new tab on ``url``, attached; returns once its load event fired."""
        target = self.call("Target.createTarget", session=False, url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", session=False, targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.evaluate(
            "new Promise(function (done) {"
            " if (document.readyState === 'complete') done(true);"
            " else window.addEventListener('load', function () { done(true); }); })"
        )

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"page script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def center(self, selector: str) -> tuple[float, float]:
        """The viewport point at the middle of the first ``selector`` match, scrolled into view."""
        x, y = self.evaluate(
            f"(function () {{ var el = document.querySelector({json.dumps(selector)});"
            " el.scrollIntoView({block: 'center'}); var r = el.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        return float(x), float(y)

    def wait_for(self, body: str, under: str = "details") -> Any:
        """The first non-null value of the function ``body``, re-run on every change under the
        element with id ``under``: waits on the page's own mutations, never on time."""
        return self.evaluate(
            "new Promise(function (done) {"
            f" function found() {{ var v = (function () {{ {body} }})(); if (v == null) return false;"
            "   done(v); return true; }"
            " if (!found()) new MutationObserver(function (m, o) { if (found()) o.disconnect(); })"
            f"   .observe(document.getElementById({json.dumps(under)}),"
            " {childList: true, subtree: true}); })"
        )

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False)
        except RuntimeError:
            pass
        finally:
            os.close(self._to_chrome)
            os.close(self._from_chrome)
            self.process.wait(timeout=60)


@contextlib.contextmanager
def opened(chromium: str, flags: Sequence[str], page: Path, profile: Path) -> Iterator[Browser]:
    """``page`` in a new headless Chromium, once its load event fired and its script finished
    (``data-ready``); the browser is closed after."""
    browser = Browser(chromium, flags, profile)
    try:
        browser.open(page.as_uri())
        assert browser.evaluate("document.body.getAttribute('data-ready')") == "1"
        yield browser
    finally:
        browser.close()
