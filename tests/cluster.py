"""A cluster of MPI "hosts" on one machine: network namespaces on a bridge.

    with Cluster(hosts=2, rate="1gbit") as cluster:
        result = cluster.mpiexec(4, ["python", "train.py"], ppn=2, timeout=600)
        cluster.link_bytes()          # bytes each host sent over its link

Each host is a network namespace with its own address (10.213.0.1, ...) on
an interface `cmlp0`, a veth pair to a bridge in a namespace of its own (the
switch), and its own hostname (an UTS namespace per command, h0, h1, ...).
`rate` shapes every host's link (tc tbf, both directions). Nothing is
reachable from the namespaces but each other: no route leaves the bridge.

MPICH's hydra launches ranks on a host the way it would over ssh: its
`-launcher-exec` is a script (written per cluster) that maps the address it
is given to that host's namespace and runs the command there. The launcher
itself runs in h0. Traffic between ranks goes over the links only when UCX
is told to use TCP (UCX_TLS=tcp,self): namespaces of one kernel share memory,
and UCX's shared-memory transports would carry it otherwise
(../shared/notes/multihost.md); `mpiexec` sets it, and the byte counters of
the links show what crossed.

Teardown runs on every exit path: leaving the `with` block (also by an
exception or Ctrl-C), SIGTERM, and interpreter exit (atexit). It kills every
process left in the namespaces and deletes them (which deletes their links).
Namespaces of an earlier run whose process is gone are deleted on start.
Needs root and iproute2 (`ip`, `tc`): `available()` says whether this
machine can.

Run as a script for a look by hand:
    python tests/cluster.py --hosts 2 --rate 1gbit -- mpiexec-args...
"""
import atexit
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SUBNET = "10.213.0"
IFACE = "cmlp0"
PREFIX = "cmlp"
# Every wait on a command is bounded.
COMMAND_TIMEOUT = 30

_serial = itertools.count()

LAUNCHER = """#!/bin/sh
# Hydra's "ssh": [options] HOST COMMAND... -> COMMAND in HOST's namespace.
while [ $# -gt 0 ]; do
    case "$1" in
        -*) shift ;;
        *) break ;;
    esac
done
host="$1"; shift
case "$host" in
{cases}
    *) echo "cmlp cluster: unknown host $host" >&2; exit 255 ;;
esac
exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0"; exec sh -c "$1"' "$name" "$*"
"""


def available():
    """(True, "") when this process can build a cluster, else (False, why)."""
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    for tool in ("ip", "tc", "unshare"):
        if shutil.which(tool) is None:
            return False, f"{tool} is not installed"
    return True, ""


def rate_bits(rate):
    """"1gbit" -> 1e9, "100mbit" -> 1e8 (tc's units, bits per second)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)bit", rate)
    if not match:
        raise ValueError(f"a rate like 1gbit, 10gbit or 100mbit, not {rate!r}")
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)]


def _burst(rate):
    # tbf's bucket: 1 ms at the rate (at least 64 kB). A link idle during
    # compute fills the bucket, and what it holds then leaves at veth
    # speed: with a 10 ms bucket (1.25 MB at 1 Gbit/s) most of a 2 MB
    # gradient went through unshaped, and steps ran 23 % under the model.
    return max(64 * 1024, int(rate_bits(rate) / 8 / 1000))


def _run(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check,
                          timeout=COMMAND_TIMEOUT)


def _namespaces():
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_and_delete(namespace):
    # Processes first (a namespace with processes lives on after `del`).
    for _ in range(50):
        pids = _run("ip", "netns", "pids", namespace, check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        time.sleep(0.05)
    _run("ip", "netns", "del", namespace, check=False)
    shutil.rmtree(f"/etc/netns/{namespace}", ignore_errors=True)


def sweep_stale():
    """Delete the namespaces of earlier clusters whose process has exited."""
    for namespace in _namespaces():
        match = re.fullmatch(rf"{PREFIX}(\d+)c\d+(sw|h\d+)", namespace)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            _kill_and_delete(namespace)


class Cluster:
    """`hosts` namespaces on one bridge; `rate` (e.g. "1gbit", "10gbit") or
    None for unshaped links. A context manager: deleted on exit."""

    def __init__(self, hosts=2, rate=None):
        ok, why = available()
        if not ok:
            raise RuntimeError(f"cannot build a test cluster here: {why}")
        if not 1 <= hosts <= 8:
            raise ValueError("1 to 8 hosts")
        if rate is not None:
            rate_bits(rate)
        self.n_hosts, self.rate = hosts, rate
        tag = f"{PREFIX}{os.getpid()}c{next(_serial)}"
        self.switch = f"{tag}sw"
        self.hosts = [f"{tag}h{i}" for i in range(hosts)]
        self.names = [f"h{i}" for i in range(hosts)]
        self.addresses = [f"{SUBNET}.{i + 1}" for i in range(hosts)]
        self.made = []
        self.directory = None
        self._closed = False
        self._previous_term = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self):
        self._previous_term = signal.getsignal(signal.SIGTERM)
        if threading_main():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        atexit.register(self.close)
        try:
            sweep_stale()
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _on_sigterm(self, signum, frame):
        self.close()
        raise SystemExit(128 + signum)

    def close(self):
        """Kill everything in the namespaces and delete them (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for namespace in reversed(self.made):
            _kill_and_delete(namespace)
        self.made = []
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        atexit.unregister(self.close)
        if threading_main() and self._previous_term is not None:
            signal.signal(signal.SIGTERM, self._previous_term)

    def _netns(self, namespace, *args):
        return _run("ip", "netns", "exec", namespace, *args)

    def _build(self):
        _run("ip", "netns", "add", self.switch)
        self.made.append(self.switch)
        self._netns(self.switch, "ip", "link", "add", "br0", "type", "bridge")
        self._netns(self.switch, "ip", "link", "set", "br0", "up")
        self.directory = tempfile.mkdtemp(prefix="cmlp-cluster-")
        for i, (namespace, address) in enumerate(zip(self.hosts,
                                                     self.addresses)):
            _run("ip", "netns", "add", namespace)
            self.made.append(namespace)
            # /etc/netns/NS/hosts is /etc/hosts inside NS (ip netns exec).
            os.makedirs(f"/etc/netns/{namespace}", exist_ok=True)
            with open(f"/etc/netns/{namespace}/hosts", "w") as f:
                f.write("127.0.0.1 localhost\n")
                f.writelines(f"{a} {n}\n" for a, n in zip(self.addresses, self.names))
            port = f"p{i}"
            _run("ip", "link", "add", port, "netns", self.switch, "type", "veth",
                 "peer", "name", IFACE, "netns", namespace)
            self._netns(self.switch, "ip", "link", "set", port, "master", "br0")
            self._netns(self.switch, "ip", "link", "set", port, "up")
            self._netns(namespace, "ip", "addr", "add", f"{address}/24", "dev", IFACE)
            self._netns(namespace, "ip", "link", "set", IFACE, "up")
            self._netns(namespace, "ip", "link", "set", "lo", "up")
            if self.rate:
                # Each direction: the host's egress, and the switch port's
                # egress towards the host.
                for ns, dev in ((namespace, IFACE), (self.switch, port)):
                    self._netns(ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
                                "rate", self.rate, "burst", f"{_burst(self.rate)}b",
                                "latency", "100ms")
        cases = "\n".join(f'    {a}|{n}) ns={ns}; name={n} ;;'
                          for a, n, ns in zip(self.addresses, self.names, self.hosts))
        self.launcher = os.path.join(self.directory, "nsexec")
        with open(self.launcher, "w") as f:
            f.write(LAUNCHER.format(cases=cases))
        os.chmod(self.launcher, 0o755)

    # ----------------------------------------------------------------- use

    def link_bytes(self):
        """{host name: bytes sent over its link} so far."""
        sent = {}
        for namespace, name in zip(self.hosts, self.names):
            out = self._netns(namespace, "cat", f"/sys/class/net/{IFACE}/statistics/tx_bytes")
            sent[name] = int(out.stdout)
        return sent

    def mpiexec_command(self, ranks, command, ppn=1, tcp=True, extra=()):
        """The argv that runs `command` on `ranks` ranks, `ppn` per host,
        from h0 (run it with self.run or self.popen)."""
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        hosts = ",".join(self.addresses[:-(-ranks // ppn)])
        argv = [mpiexec, "-launcher", "ssh", "-launcher-exec", self.launcher,
                "-hosts", hosts, "-iface", IFACE, "-ppn", str(ppn), "-n", str(ranks)]
        if tcp:
            argv += ["-genv", "UCX_TLS", "tcp,self", "-genv", "UCX_NET_DEVICES", IFACE]
        return [*argv, *extra, *command]

    def in_host(self, host, argv):
        """argv wrapped to run in host `host` (an index), with its hostname."""
        return ["ip", "netns", "exec", self.hosts[host], "unshare", "--uts", "sh", "-c",
                'hostname "$0"; exec "$@"', self.names[host], *argv]

    def mpiexec(self, ranks, command, ppn=1, timeout=600, env=None, tcp=True, cwd=None):
        """Run `command` (an argv) under mpiexec from h0; CompletedProcess."""
        return subprocess.run(self.in_host(0, self.mpiexec_command(ranks, command, ppn, tcp)),
                              capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=cwd)

    def popen(self, ranks, command, ppn=1, env=None, tcp=True, cwd=None, **kwargs):
        """mpiexec started in the background (a Popen), from h0."""
        return subprocess.Popen(self.in_host(0, self.mpiexec_command(ranks, command, ppn, tcp)),
                                env=env, cwd=cwd, **kwargs)

    def pids(self, host):
        """The processes running in host `host` (an index)."""
        out = _run("ip", "netns", "pids", self.hosts[host], check=False).stdout
        return [int(pid) for pid in out.split()]

    def kill_host(self, host):
        """SIGKILL every process of host `host`: the host dies."""
        for pid in self.pids(host):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def link_down(self, host):
        """Take host `host`'s link down (its cable pulled)."""
        self._netns(self.hosts[host], "ip", "link", "set", IFACE, "down")


def threading_main():
    import threading
    return threading.current_thread() is threading.main_thread()


def main(argv):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--ppn", type=int, default=1)
    parser.add_argument("--rate", default=None)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    with Cluster(args.hosts, args.rate) as cluster:
        before = cluster.link_bytes()
        result = cluster.mpiexec(args.hosts * args.ppn, args.command, ppn=args.ppn)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        after = cluster.link_bytes()
        print({name: after[name] - before[name] for name in after})
        return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
