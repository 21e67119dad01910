"""Atomic, crash-safe file writes for models and checkpoints (cmlp.persistence).

Design
------
* The data goes to a temporary file in the target's directory, is fsynced,
  gets the mode the target had (a new file: 0o666 less the umask), and is
  renamed over the target; then the directory is fsynced. A reader sees the
  old file or the new one, never part of one, and a full disk or a crash
  leaves the old file as it was.
* A symlink is written through to its target; anything at the path that is
  not a regular file (a directory, a FIFO, a device) is refused.
* Temporaries of saves that died are removed by later saves: a live save
  holds an flock on its temporary from creation until it is renamed (see
  below), so liveness works across PID namespaces and hosts.
* Errors name the path asked for, never the temporary.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
import time

TMP_PREFIX, TMP_SUFFIX = ".cmlp-", ".npz.tmp"
# A temporary file of a save that died (SIGKILL, power loss) is removed by a
# later save in its directory once no process holds its lock (flock, taken
# as the save creates it and held until it is renamed), or after this long.
# Liveness is the lock, never the PID in the name: a writer in another PID
# namespace (a container sharing the volume) or on another host (NFS) has a
# PID this process cannot see. An unlocked temporary younger than
# UNLOCKED_GRACE_SECONDS is left alone: its writer may not have locked it yet.
STALE_TMP_SECONDS = 24 * 3600
UNLOCKED_GRACE_SECONDS = 60


def _regular_target(path):
    """(the file a save to `path` writes, its current mode or None): symlinks
    are followed to their target; anything that exists and is not a regular
    file (a directory, a FIFO, a device) is refused."""
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target, None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path!r} exists and is not a regular file; cmlp saves only to "
                         "regular files (or a new path)")
    return target, stat.S_IMODE(mode)


def _new_file_mode():
    """0o666 less the process umask (what open() would create)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


def _lock(fd, blocking=True):
    """flock(LOCK_EX) on fd; False if it is held elsewhere (non-blocking)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _remove_stale_temporaries(directory):
    now = time.time()
    for name in os.listdir(directory):
        if not (name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)):
            continue
        path = os.path.join(directory, name)
        try:
            age = now - os.lstat(path).st_mtime
            if age > STALE_TMP_SECONDS:
                os.unlink(path)
            elif age > UNLOCKED_GRACE_SECONDS:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    if _lock(fd, blocking=False):      # no live writer holds it
                        os.unlink(path)
                finally:
                    os.close(fd)
        except OSError:
            pass          # another save removed it first, or it is not ours to remove


def _naming(exc, path):
    """The OSError of a save, naming the file the user asked for rather than
    the temporary (or nothing, as ENOSPC from a write does)."""
    reason = exc.strerror or str(exc)
    return type(exc)(exc.errno, f"could not save {path!r}: {reason}", path)


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:       # some file systems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def write_atomically(path, write_to) -> None:
    """Write `path` atomically (see the module docstring): write_to(fh) fills
    a binary file object with the content."""
    path = os.fspath(path)
    target, mode = _regular_target(path)
    directory = os.path.dirname(target)
    try:
        _remove_stale_temporaries(directory)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{TMP_PREFIX}{os.getpid()}-",
                                   suffix=TMP_SUFFIX)
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            _lock(fh.fileno())            # held until renamed: this save is alive
            write_to(fh)
            fh.flush()
            os.fchmod(fh.fileno(), _new_file_mode() if mode is None else mode)
            os.fsync(fh.fileno())
            os.replace(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise
    _fsync_directory(directory)
