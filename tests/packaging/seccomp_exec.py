#!/usr/bin/python3
"""Stands in for systemd's SystemCallFilter= (an allow list) with SystemCallErrorNumber=, where
systemd does not run: loads a seccomp filter that allows the system calls of the named sets, as
`systemd-analyze syscall-filter` expands them on this machine, makes every other call fail with
the errno, then execs the command. The filter holds for everything the command starts.

    seccomp_exec.py --errno EPERM|kill @system-service [...] -- COMMAND [ARG...]

"kill" is systemd's default without SystemCallErrorNumber=: the process dies of SIGSYS.
"""
import errno
import os
import subprocess
import sys

import seccomp


def syscall_sets():
    """{"@set": [member, ...]} from systemd's own listing; members are calls or other sets."""
    text = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], check=True,
                          capture_output=True, text=True).stdout
    sets, cur = {}, None
    for line in text.splitlines():
        if line.startswith("@"):
            cur = sets.setdefault(line.split()[0], [])
        elif cur is not None and line.strip() and not line.strip().startswith("#"):
            cur.append(line.strip())
    return sets


def expand(name, sets):
    if not name.startswith("@"):
        return {name}
    if name not in sets:
        sys.exit("seccomp_exec.py: systemd knows no set %s" % name)
    return set().union(*(expand(m, sets) for m in sets[name]))


def main():
    args = sys.argv[1:]
    if len(args) < 4 or args[0] != "--errno" or "--" not in args:
        sys.exit(__doc__)
    action = seccomp.KILL_PROCESS if args[1] == "kill" else seccomp.ERRNO(getattr(errno, args[1]))
    sep = args.index("--")
    sets = syscall_sets()
    allowed = set().union(*(expand(n, sets) for n in args[2:sep]))
    f = seccomp.SyscallFilter(defaction=action)
    n = 0
    for call in sorted(allowed):
        try:
            f.add_rule(seccomp.ALLOW, call)
            n += 1
        except (RuntimeError, ValueError):
            pass  # a name this kernel or architecture lacks
    f.load()
    os.execvp(args[sep + 1], args[sep + 1:])


main()
