"""A small browser for the webmail tests: HTTPS with http.client, cookies as a browser keeps
them (Set-Cookie with Max-Age=0 deletes), forms read from the page, redirects followed on
request. Only what the tests need; it trusts the server's self-signed certificate."""

from __future__ import annotations

import html.parser
import http.client
import ssl
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from email.message import Message


def _context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class Page:
    status: int
    headers: Message
    body: bytes
    url: str

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    def forms(self) -> list[dict]:
        parser = _Forms()
        parser.feed(self.text)
        return parser.forms

    def form(self, action: str) -> dict[str, str]:
        """The fields of the first form posting to ``action``, hidden ones included."""
        for form in self.forms():
            if form["action"] == action:
                return dict(form["fields"])
        raise AssertionError(f"no form posting to {action} on {self.url}:\n{self.text[:2000]}")


class _Forms(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    _textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "fields": []})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"].append((a["name"], a.get("value") or ""))
        elif tag == "textarea" and self.forms and a.get("name"):
            self._textarea = a["name"]
            self.forms[-1]["fields"].append((a["name"], ""))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            name, value = self.forms[-1]["fields"][-1]
            self.forms[-1]["fields"][-1] = (name, value + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None


@dataclass
class Browser:
    port: int
    host: str = "127.0.0.1"
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookie_lines: list[str] = field(default_factory=list)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        follow: bool = True,
    ) -> Page:
        for _ in range(5):
            conn = http.client.HTTPSConnection(self.host, self.port, context=_context(), timeout=30)
            try:
                sent = {"Host": f"{self.host}:{self.port}", **(headers or {})}
                if self.cookies:
                    sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
                conn.request(method, path, body=body, headers=sent)
                response = conn.getresponse()
                page = Page(response.status, response.msg, response.read(), path)
            finally:
                conn.close()
            for line in page.headers.get_all("Set-Cookie") or []:
                self.set_cookie_lines.append(line)
                name, _, rest = line.partition("=")
                value = rest.split(";", 1)[0]
                if "max-age=0" in line.lower().replace(" ", ""):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
            if not follow or page.status not in (301, 302, 303) or not page.header("Location"):
                return page
            location = urllib.parse.urlsplit(page.header("Location"))
            path = location.path + ("?" + location.query if location.query else "")
            method, body, headers = "GET", None, {}
        raise AssertionError("too many redirects")

    def get(self, path: str, **kwargs) -> Page:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, fields: dict[str, str] | list, **kwargs) -> Page:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **kwargs.pop("headers", {})}
        body = urllib.parse.urlencode(fields).encode()
        return self.request("POST", path, body=body, headers=headers, **kwargs)

    def post_multipart(
        self, path: str, fields: dict[str, str] | list, files: list | None = None, **kwargs
    ) -> Page:
        """A multipart/form-data POST, as a browser sends a form with file inputs: ``files``
        holds (field name, file name, content type, bytes)."""
        boundary = "----txmtest" + uuid.uuid4().hex
        items = fields.items() if isinstance(fields, dict) else fields
        body = bytearray()
        for name, value in items:
            body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                     f"\r\n\r\n").encode() + str(value).encode() + b"\r\n"  # fmt: skip
        for name, filename, content_type, data in files or []:
            body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
                     ).encode() + data + b"\r\n"  # fmt: skip
        body += f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
                   **kwargs.pop("headers", {})}  # fmt: skip
        return self.request("POST", path, body=bytes(body), headers=headers, **kwargs)

    def login(self, user: str, password: str, **kwargs) -> Page:
        fields = self.get("/login").form("/login")
        fields.update(username=user, password=password)
        return self.post("/login", fields, **kwargs)

    @property
    def csrf(self) -> str:
        """The session's CSRF token, read from the logout form of the mail page."""
        return self.get("/mail").form("/logout")["csrf"]

    def wait_for(self, path: str, text: str, timeout: float = 15) -> Page:
        """GET ``path`` until its page contains ``text`` (mail is delivered after the 250)."""
        deadline = time.time() + timeout
        while True:
            page = self.get(path)
            if text in page.text or time.time() > deadline:
                return page
            time.sleep(0.1)
