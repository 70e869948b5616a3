"""HTTP server on 127.0.0.1 that serves a folder and counts what it sends.

Stands in for a model's origin in the start-up and bandwidth benchmarks.
Every GET and HEAD is counted per path with the body bytes sent, and
GET /_stats returns the counts as JSON. The server writes its port to
--port-file once it listens and stops on SIGTERM.
"""

import argparse
import functools
import http.server
import json
import signal
import socketserver
import sys
import threading
from collections import defaultdict

STATS_PATH = "/_stats"


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.paths = defaultdict(lambda: {"requests": 0, "get": 0, "head": 0, "bytes": 0})

    def add(self, path, method, sent):
        with self.lock:
            entry = self.paths[path]
            entry["requests"] += 1
            entry[method.lower()] += 1
            entry["bytes"] += sent

    def snapshot(self):
        with self.lock:
            return {path: dict(entry) for path, entry in self.paths.items()}


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    counts = None

    def do_GET(self):
        if self.path == STATS_PATH:
            body = json.dumps(self.counts.snapshot()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._serve("GET")

    def do_HEAD(self):
        self._serve("HEAD")

    def _serve(self, method):
        # SimpleHTTPRequestHandler copies the file through copyfile(); the
        # wrapper counts what actually reaches the socket.
        sent = [0]
        original = self.copyfile

        def counting_copy(source, destination):
            while chunk := source.read(64 * 1024):
                destination.write(chunk)
                sent[0] += len(chunk)

        self.copyfile = counting_copy
        try:
            if method == "GET":
                super().do_GET()
            else:
                super().do_HEAD()
        finally:
            self.copyfile = original
            self.counts.add(self.path, method, sent[0])

    def log_message(self, format, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()

    CountingHandler.counts = Counts()
    handler = functools.partial(CountingHandler, directory=args.directory)
    server = Server(("127.0.0.1", 0), handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())

    with open(args.port_file, "w") as port_file:
        port_file.write(str(server.server_address[1]))
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
