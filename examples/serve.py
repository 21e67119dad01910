"""Serve a cmlp Network over HTTP from a threaded server (stdlib only).

    python examples/serve.py MODEL.npz [--host 127.0.0.1] [--port 8000]

POST /predict with a JSON body {"rows": [[x11, x12, ...], ...]} answers
{"classes": [...], "probabilities": [[...], ...]} (softmax and sigmoid
networks) or {"outputs": [...]} (identity and exp ones). GET /health
answers {"ok": true, "sizes": [...]}.

The settings that matter, as measured (issue 19):
* One BLAS thread per process (OPENBLAS_NUM_THREADS=1, set before NumPy is
  imported): requests run in threads of their own, and OpenBLAS's pool
  would make them queue for its threads and spin.
* TCP_NODELAY on every connection (disable_nagle_algorithm): without it
  the response's headers and body go out in two segments and Nagle's
  algorithm holds the second until the client's delayed ACK, ~40 ms a
  request.
* HTTP/1.1 keep-alive, so a client reuses its connection.
* One Network shared by every thread: forward/predict are thread-safe and
  release the GIL for large batches; the model is never copied per request.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

import numpy as np  # noqa: E402

from cmlp import Network  # noqa: E402

MAX_BODY_BYTES = 16 << 20          # refuse larger requests (413) before reading them


def make_handler(net):
    """A request handler class serving `net`."""
    classify = net.output in ("softmax", "sigmoid")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args):          # quiet: one line a request is too much
            pass

        def _send(self, status, payload):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                self._send(200, {"ok": True, "sizes": list(net.sizes)})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):
            if self.path != "/predict":
                self._send(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length", "0") or 0)
            if length > MAX_BODY_BYTES:
                self._send(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
                self.close_connection = True
                return
            try:
                rows = np.asarray(json.loads(self.rfile.read(length))["rows"], dtype=net.dtype)
                outputs = net.forward(rows)
            except (ValueError, TypeError, KeyError) as exc:   # bad JSON, shape, values
                self._send(400, {"error": str(exc)})
                return
            if classify:
                classes = (outputs.argmax(axis=1) if net.output == "softmax"
                           else (outputs > 0.5).astype(int))
                self._send(200, {"classes": classes.tolist(), "probabilities": outputs.tolist()})
            else:
                self._send(200, {"outputs": outputs.tolist()})

    return Handler


def make_server(net, host="127.0.0.1", port=8000):
    """A ThreadingHTTPServer serving `net` (port 0: any free port)."""
    server = ThreadingHTTPServer((host, port), make_handler(net))
    server.daemon_threads = True
    return server


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = make_server(Network.load(args.model), args.host, args.port)
    print(f"serving {args.model} on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
