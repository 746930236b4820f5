"""Rush's example (the seed's Rusher) against a tiny HTTP API limited by the module.

The API lets 10 calls through (a THROTTLE bucket of 10 tokens, refilled one
per 100 s) and throttles the rest:

- GET: 200, or 429 (with Retry-After) when throttled;
- POST /v1/xmlrpc/ (XML-RPC, as the seed's memset API): fault 4 "bad
  username or password" for a call that got through (the seed counts it as
  'attempted'), fault 12 "throttled" for one that did not.

`python rush_http.py` serves the API on a free port in this process and
rushes it as the seed does: 9 threads (9 attempted), then 2 threads (1
attempted, 1 throttled). `python rush_http.py --serve PORT` only serves it
(scripts/seeds.sh points the seed's own XML-RPC example at it).
"""
import os
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xmlrpc.client import Fault, dumps, loads

import redis

from redis_throttle import Limiter
from redis_throttle.rush import Rusher

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


def make_api(port: int) -> ThreadingHTTPServer:
    r = redis.Redis.from_url(URL)
    # capacity ceil(0.01 x 1 x 1000) = 10 calls, then one more every 100 s
    limit = Limiter(r, f"example:rush-api:{os.getpid()}:{port}", rps="0.01", burst=1, window=1000)

    class Api(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def answer(self, status, body, content_type="text/plain", headers=()):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            try:
                result = limit.allow()
            except redis.RedisError as e:
                return self.answer(500, f"limiter error: {e}\n")
            if result:
                return self.answer(200, "ok\n")
            return self.answer(429, "throttled\n", headers=result.headers().items())

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                loads(body)  # a well-formed call; every method needs credentials
                result = limit.allow()
            except Exception as e:  # noqa: BLE001 - the client sees it as a 500
                return self.answer(500, f"error: {e}\n")
            fault = Fault(4, "bad username or password") if result else Fault(12, "throttled")
            self.answer(200, dumps(fault, methodresponse=True), "text/xml")

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # a rush connects all at once (the default backlog is 5)
        daemon_threads = True

    return Server(("127.0.0.1", port), Api)


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        make_api(int(sys.argv[2])).serve_forever()
        return

    api = make_api(0)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{api.server_address[1]}/"

    def api_tester(index, thread_count):
        request = urllib.request.Request(endpoint)  # prepare the worker
        yield  # ready to rush
        try:
            with urllib.request.urlopen(request, timeout=30):
                yield "attempted"
        except urllib.error.HTTPError as e:
            if e.code == 429:
                yield "throttled"
            else:
                yield f"HTTP {e.code}"

    print("API rate limiting test:")
    rusher = Rusher(api_tester, 9)  # the API throttles after 10 calls: 9 first
    _, first = rusher.rush_and_report()
    rusher.thread_count = 2  # then two at once: one goes through
    _, second = rusher.rush_and_report()
    api.shutdown()
    assert first == {"attempted": 9}, first
    assert second == {"attempted": 1, "throttled": 1}, second


if __name__ == "__main__":
    main()
