"""A small HTTP client: keep-alive connections, browser-like logins, requests from many threads.

Threads rather than asyncio so that only the standard library is needed: a thread waiting on
its socket releases the interpreter, so N threads keep N requests in flight.
"""

import html
import http.client
import re
import threading
import urllib.parse
from typing import NamedTuple

VISITS = re.compile(r"Logged in as (.*?)\.(?:\s|<br\s*/?>)*Visits:\s*(\d+)")
WHOAMI = re.compile(r"Logged in as (.*?)\.(?:<|\s|$)")
NOT_LOGGED_IN = "You are not logged in"
INPUT = re.compile(r"<input[^>]*>", re.I)
ATTR = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")


class Response(NamedTuple):
    status: int
    body: str
    set_cookies: list
    location: object


class Client:
    """One keep-alive connection to an app on 127.0.0.1."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.timeout = timeout
        self._conn = None
        self._used = False

    def close(self):
        if self._conn:
            self._conn.close()
            self._conn = None

    def request(self, method, path, cookie=None, form=None):
        headers = {"Cookie": cookie} if cookie else {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        # A server may close a kept-alive connection that sat idle (actix-web after 5 s): then
        # the request never reached it and is sent again on a new connection, once.
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
                self._used = False
            try:
                self._conn.request(method, path, body=body, headers=headers)
                r = self._conn.getresponse()
                data = r.read().decode(errors="replace")
                self._used = True
                if r.will_close:
                    self.close()
                cookies = [v for k, v in r.getheaders() if k.lower() == "set-cookie"]
                return Response(r.status, data, cookies, r.getheader("Location"))
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                stale = self._used
                self.close()
                if attempt == 2 or not stale:
                    raise
        raise AssertionError("unreachable")

    def get(self, path, cookie=None):
        return self.request("GET", path, cookie=cookie)


def cookie_header(set_cookies):
    """The Cookie header a browser would send back: every cookie set, except deleted ones."""
    pairs = []
    for sc in set_cookies:
        pair = sc.split(";", 1)[0].strip()
        name, _, value = pair.partition("=")
        if name and value:
            pairs.append(pair)
    return "; ".join(pairs)


def hidden_inputs(page):
    """The hidden fields of a form (a CSRF token, say), as a browser would post them back."""
    out = {}
    for tag in INPUT.findall(page):
        attrs = {
            m.group(1).lower(): html.unescape(next(g for g in m.groups()[1:] if g is not None))
            for m in ATTR.finditer(tag)
        }
        if attrs.get("type", "").lower() == "hidden" and "name" in attrs:
            out[attrs["name"]] = attrs.get("value", "")
    return out


def login(client, username):
    """Logs in as a browser would: shows the form, posts it back with its hidden fields and the
    cookies it set. Returns the Cookie header of the logged-in session, or None."""
    form_page = client.get("/login")
    if form_page.status != 200:
        return None
    form = {**hidden_inputs(form_page.body), "username": username}
    pre = cookie_header(form_page.set_cookies)
    r = client.request("POST", "/login", cookie=pre or None, form=form)
    if r.status not in (301, 302, 303, 307):
        return None
    return cookie_header(r.set_cookies) or None


def visits_in(body):
    m = VISITS.search(body)
    return int(m.group(2)) if m else None


def whoami_in(body):
    """The (escaped) name of a /whoami answer, or None."""
    m = WHOAMI.search(body)
    return m.group(1) if m and not VISITS.search(body) else None


def fan_out(port, items, fn, workers):
    """fn(client, item) for every item, from `workers` threads with a connection each; results
    in the order of `items`. An exception in fn is the result of its item."""
    results = [None] * len(items)
    lock = threading.Lock()
    it = iter(enumerate(items))

    def work():
        client = Client(port)
        try:
            while True:
                with lock:
                    nxt = next(it, None)
                if nxt is None:
                    return
                i, item = nxt
                try:
                    results[i] = fn(client, item)
                except Exception as e:  # noqa: BLE001 - reported per item by the caller
                    client.close()
                    results[i] = e
        finally:
            client.close()

    threads = [
        threading.Thread(target=work, daemon=True) for _ in range(min(workers, len(items)) or 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
