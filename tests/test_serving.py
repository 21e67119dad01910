"""examples/serve.py under a bounded load on 127.0.0.1 (issue 19): 4 client
threads x 150 keep-alive requests of 1-16 rows each; errors 0, every answer
equal to Network.predict_proba of the same rows (one call of the same size:
BLAS may sum a 1-row and a 2,000-row product in other orders), the server's
memory flat."""
import http.client
import importlib.util
import json
import os
import threading
import time

import numpy as np

from cmlp import Network

from helpers import TESTS_DIR

SERVE = os.path.join(os.path.dirname(TESTS_DIR), "examples", "serve.py")


def load_example():
    spec = importlib.util.spec_from_file_location("cmlp_example_serve", SERVE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rss_kb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def client(port, X, net, requests, seed, failures, timings):
    rng = np.random.default_rng(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(requests):
            start = rng.integers(0, len(X) - 16)
            n = int(rng.integers(1, 17))
            body = json.dumps({"rows": X[start:start + n].tolist()})
            began = time.perf_counter()
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = json.loads(response.read())
            timings.append(time.perf_counter() - began)
            if response.status != 200 or not np.array_equal(
                    np.asarray(payload["probabilities"], dtype=np.float32),
                    net.predict_proba(X[start:start + n])):   # the same rows, one call
                failures.append((response.status, payload))
    except Exception as exc:                   # counted, not raised in a thread
        failures.append(repr(exc))
    finally:
        conn.close()


def test_threaded_server_under_load():
    serve = load_example()
    rng = np.random.default_rng(0)
    net = Network([784, 128, 64, 10], seed=0)
    X = rng.random((2000, 784), dtype=np.float32)
    server = serve.make_server(net, port=0)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/health")
        assert json.loads(conn.getresponse().read())["sizes"] == [784, 128, 64, 10]
        conn.request("POST", "/predict", json.dumps({"rows": [[1.0, 2.0]]}))
        bad = conn.getresponse()
        assert bad.status == 400 and "784" in json.loads(bad.read())["error"]
        conn.close()
        failures, timings = [], []
        warm = [threading.Thread(target=client, args=(port, X, net, 50, s, failures,
                                                      timings)) for s in range(4)]
        for t in warm:
            t.start()
        for t in warm:
            t.join(60)
        before = rss_kb()
        clients = [threading.Thread(target=client, args=(port, X, net, 150, 10 + s,
                                                         failures, timings))
                   for s in range(4)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(120)
        after = rss_kb()
        # One client, one row at a time: the round trip without Nagle's wait.
        single = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"rows": X[:1].tolist()})
        for _ in range(50):
            began = time.perf_counter()
            conn.request("POST", "/predict", body)
            conn.getresponse().read()
            single.append(time.perf_counter() - began)
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert not any(t.is_alive() for t in warm + clients)
    assert failures == []
    assert len(timings) == 4 * 50 + 4 * 150
    median_ms = 1000 * float(np.median(timings))
    single_ms = 1000 * float(np.median(single))
    print(f"{len(timings)} requests from 4 threads, 0 errors, median {median_ms:.2f} ms; "
          f"1-row requests alone: median {single_ms:.2f} ms; RSS {before} -> {after} kB")
    # Without TCP_NODELAY a request waits ~40 ms for the client's delayed ACK.
    assert single_ms < 25
    assert after - before < 20_000          # kB: flat, not growing with requests
