"""Bubblewrap command lines for the code sandbox (operating-system isolation).

Each sandboxed interpreter runs in new user, pid, network, ipc, uts, cgroup and mount namespaces
as an unprivileged uid with no capabilities; it sees only the system directories Python needs
(read-only), its own /proc and a minimal /dev, and one size-limited tmpfs as its only writable
place. A seccomp filter refuses sockets, ptrace, mount / namespace calls, kernel keyrings, bpf,
io_uring and (unless allowed) new processes and threads. `--die-with-parent` and the pid namespace
mean that killing the bwrap process kills everything started inside.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import threading
from functools import lru_cache

# System calls refused with EPERM; numbers per architecture (asm/unistd_64.h, asm-generic/unistd.h).
_DENY = ("socket", "socketpair", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "syslog",
         "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "acct", "swapon", "swapoff",
         "reboot", "init_module", "finit_module", "delete_module", "quotactl", "kexec_load",
         "kexec_file_load", "add_key", "request_key", "keyctl", "bpf", "perf_event_open", "userfaultfd",
         "io_uring_setup", "io_uring_enter", "io_uring_register", "open_tree", "move_mount", "fsopen",
         "fsconfig", "fsmount", "fspick", "mount_setattr")
_PROCESSES = ("fork", "vfork", "clone", "clone3")
_SYSCALLS = {
    "x86_64": (0xC000003E, {
        "socket": 41, "socketpair": 53, "clone": 56, "fork": 57, "vfork": 58, "ptrace": 101,
        "syslog": 103, "chroot": 161, "pivot_root": 155, "acct": 163, "mount": 165, "umount2": 166,
        "swapon": 167, "swapoff": 168, "reboot": 169, "init_module": 175, "delete_module": 176,
        "quotactl": 179, "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
        "unshare": 272, "perf_event_open": 298, "setns": 308, "process_vm_readv": 310,
        "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
        "userfaultfd": 323}),
    "aarch64": (0xC00000B7, {
        "socket": 198, "socketpair": 199, "clone": 220, "ptrace": 117, "syslog": 116, "chroot": 51,
        "pivot_root": 41, "acct": 89, "mount": 40, "umount2": 39, "swapon": 224, "swapoff": 225,
        "reboot": 142, "init_module": 105, "delete_module": 106, "quotactl": 60, "kexec_load": 104,
        "add_key": 217, "request_key": 218, "keyctl": 219, "unshare": 97, "perf_event_open": 241,
        "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
        "finit_module": 273, "kexec_file_load": 294, "bpf": 280, "userfaultfd": 282}),
}
_COMMON = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
           "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
           "clone3": 435, "mount_setattr": 442}
_SANDBOX_UID = 65534


def seccomp_program(allow_processes: bool) -> bytes | None:
    """A classic-BPF seccomp filter (struct sock_filter[]), or None on an unknown architecture."""
    arch = _SYSCALLS.get(platform.machine())
    if arch is None:
        return None
    audit_arch, numbers = arch
    numbers = {**numbers, **_COMMON}
    names = _DENY + (() if allow_processes else _PROCESSES)
    deny = sorted({numbers[n] for n in names if n in numbers})
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, eperm, kill = 0x7FFF0000, 0x00050000 | 1, 0x80000000

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    checks = ([(jge, 0x40000000)] if platform.machine() == "x86_64" else []) + [(jeq, n) for n in deny]
    prog = [op(ld, 4), op(jeq, audit_arch, 1, 0), op(ret, kill), op(ld, 0)]
    prog += [op(code, k, len(checks) - i, 0) for i, (code, k) in enumerate(checks)]  # match -> deny
    prog += [op(ret, allow), op(ret, eperm)]
    return b"".join(prog)


def _system_binds() -> list[str]:
    """/usr and the /bin, /lib* entries (symlinks kept as symlinks), the loader cache, Python's prefix."""
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    prefix = os.path.realpath(sys.base_prefix)
    exe_dir = os.path.dirname(os.path.dirname(python_executable()))
    for root in dict.fromkeys((prefix, exe_dir)):
        if root != "/usr" and not root.startswith("/usr/") and os.path.isdir(root):
            args += ["--ro-bind", root, root]
    purelib = os.path.realpath(sysconfig.get_paths(vars={"base": prefix, "platbase": prefix})["purelib"])
    if os.path.isdir(purelib):  # the base interpreter's installed packages: hidden (stdlib only)
        args += ["--tmpfs", purelib, "--remount-ro", purelib]
    return args


@lru_cache(maxsize=1)
def python_executable() -> str:
    """The real interpreter (a venv's python is a symlink to it; the venv itself is not mounted)."""
    return os.path.realpath(sys.executable)


@lru_cache(maxsize=1)
def _bwrap() -> str:
    return shutil.which("bwrap") or "bwrap"


@lru_cache(maxsize=1)
def _binds() -> tuple[str, ...]:
    return tuple(_system_binds())


def command(workdir: str, disk_mb: int, seccomp_fd: int | None, info_fd: int | None = None) -> list[str]:
    """The bwrap argv up to (not including) the program to run inside.

    `info_fd` receives bwrap's JSON with "child-pid", the host pid of the sandbox's pid 1:
    killing that one takes the whole pid namespace down before bwrap itself exits.
    """
    args = [_bwrap(), "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--uid", str(_SANDBOX_UID), "--gid", str(_SANDBOX_UID),
            "--hostname", "sandbox", *_binds(), "--proc", "/proc", "--dev", "/dev",
            "--size", str(disk_mb * 1024 * 1024), "--tmpfs", workdir,
            "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", workdir]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    return args + ["--"]


def kill_namespace(info: bytes, bwrap_pid: int) -> None:
    """SIGKILL the sandbox's pid 1 named in bwrap's info (if still bwrap's child): all inside die.

    A pidfd pins the process before its parent is checked, so a recycled pid is never hit.
    """
    m = re.search(rb'"child-pid"\s*:\s*(\d+)', info)
    if m is None:
        return
    pid = int(m.group(1))
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        if ppid == bwrap_pid:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass
    finally:
        os.close(fd)


def seccomp_fd(allow_processes: bool) -> int | None:
    """A pipe's read end holding the filter (bwrap reads it to the end), or None."""
    program = seccomp_program(allow_processes)
    if program is None:
        return None
    r, w = os.pipe()
    try:
        os.write(w, program)
    finally:
        os.close(w)
    return r


_probe_lock = threading.Lock()
_probe: tuple[bool, str] | None = None


def available() -> tuple[bool, str]:
    """Whether bwrap can start Python here (probed once per process) and, if not, why."""
    global _probe
    with _probe_lock:
        if _probe is None:
            _probe = _run_probe()
        return _probe


def _run_probe() -> tuple[bool, str]:
    if shutil.which("bwrap") is None:
        return False, "bubblewrap (bwrap) is not installed"
    fd = seccomp_fd(False)
    argv = command("/tmp/alignlab-sandbox-probe", 1, fd) + [python_executable(), "-I", "-S", "-c", "print(6 * 7)"]
    try:
        res = subprocess.run(argv, capture_output=True, timeout=30, pass_fds=() if fd is None else (fd,),
                             env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bwrap did not start: {e}"
    finally:
        if fd is not None:
            os.close(fd)
    if res.returncode != 0 or res.stdout.strip() != b"42":
        why = res.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {res.returncode}"]
        return False, f"bwrap cannot start Python here: {why[0][:300]}"
    return True, ""
