"""A network of its own for one browser: a Linux network namespace and a veth pair.

The host side of the pair (``host_address``, in the root namespace) and the namespace
side (``address``) share a private /30. A process started in the namespace (see
``wrap()``) reaches the host only through that pair, so taking the host side down pulls
its network as a cable or a Wi-Fi drop would (its interface loses carrier), while the
host side's address stays reachable from the root namespace.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's ``ip``. Names and addresses
come from the process id, so parallel runs on one machine do not collide.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

COMMAND_TIMEOUT = 10.0


class NetworkError(Exception):
    """An ``ip`` command failed."""


class NetworkNamespace:
    def __init__(self, tag: str = "mw", pid: int | None = None) -> None:
        pid = os.getpid() if pid is None else pid
        self.tag = tag
        self.name = f"{tag}drop{pid}"
        # Interface names: at most 15 characters.
        self.host_interface = f"{tag}h{pid}"[:15]
        self.interface = f"{tag}p{pid}"[:15]
        subnet = f"10.{200 + pid % 50}.{(pid // 50) % 256}"
        self.host_address = f"{subnet}.1"
        self.address = f"{subnet}.2"
        self.ip = shutil.which("ip") or "/usr/sbin/ip"

    @staticmethod
    def unavailable() -> str | None:
        """Why namespaces cannot be made here (None when they probably can)."""
        if shutil.which("ip") is None:
            return "iproute2's `ip` is not installed"
        if os.geteuid() != 0:
            return "network namespaces need root (CAP_NET_ADMIN)"
        return None

    def run(self, *args: str, namespace: bool = False) -> None:
        command = [self.ip, *(("netns", "exec", self.name, self.ip) if namespace else ()), *args]
        try:
            done = subprocess.run(command, capture_output=True, timeout=COMMAND_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NetworkError(f"{' '.join(command)}: {exc}") from exc
        if done.returncode != 0:
            raise NetworkError(f"{' '.join(command)}: "
                               f"{done.stderr.decode(errors='replace').strip()}")

    def create(self) -> None:
        """Make the namespace and the pair, both sides up; undone again on any failure."""
        self.remove()  # a pair left over with this pid would make `link add` fail
        self.remove_leftovers()
        try:
            self.run("netns", "add", self.name)
            self.run("link", "add", self.host_interface, "type", "veth",
                     "peer", "name", self.interface)
            self.run("link", "set", self.interface, "netns", self.name)
            self.run("addr", "add", f"{self.host_address}/30", "dev", self.host_interface)
            self.run("link", "set", self.host_interface, "up")
            self.run("link", "set", "lo", "up", namespace=True)
            self.run("addr", "add", f"{self.address}/30", "dev", self.interface, namespace=True)
            self.run("link", "set", self.interface, "up", namespace=True)
        except NetworkError:
            self.remove()
            raise

    def set_link(self, up: bool) -> None:
        """Plug (``up``) or pull the namespace's network: its interface keeps its address
        and loses carrier (a cable pulled, a Wi-Fi that went quiet)."""
        self.run("link", "set", self.host_interface, "up" if up else "down")

    def remove(self) -> None:
        """Delete the pair and the namespace; quietly does nothing for what is not there.

        Deleting the host side removes both ends at once, even while a process still
        lives in the namespace (which would otherwise keep its end alive)."""
        for args in (("link", "del", self.host_interface), ("netns", "del", self.name)):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run([self.ip, *args], capture_output=True, timeout=COMMAND_TIMEOUT,
                               check=False)

    def remove_leftovers(self) -> None:
        """Remove what runs that were killed (SIGKILL skips every cleanup) left behind:
        this tag's namespaces and pairs named after processes that no longer exist."""
        try:
            listed = subprocess.run([self.ip, "netns", "list"], capture_output=True,
                                    timeout=COMMAND_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return
        pattern = re.compile(rf"^{re.escape(self.tag)}drop(\d+)\b")
        for line in listed.stdout.decode(errors="replace").splitlines():
            found = pattern.match(line)
            if found is None:
                continue
            pid = int(found.group(1))
            if not Path(f"/proc/{pid}").exists():
                NetworkNamespace(self.tag, pid).remove()

    def wrap(self, executable: str, directory: Path) -> Path:
        """A script that runs ``executable`` (with its arguments) inside the namespace.

        Playwright drives Chromium over a pipe (file descriptors 3 and 4), which
        ``ip netns exec`` passes on, and it execs rather than forks, so the process
        Playwright started is Chromium itself."""
        script = directory / f"in-{self.name}"
        command = " ".join(shlex.quote(part) for part in (self.ip, "netns", "exec", self.name,
                                                          executable))
        script.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return script
