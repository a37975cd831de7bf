#!/usr/bin/python3
"""Builds a Dockerfile's stages in chroots, where no Docker engine runs: each FROM becomes a
root file system made by debootstrap, RUN runs there with /bin/sh -c in the stage's WORKDIR
and ENV, COPY copies from the build context or, with --from, from an earlier stage's root.
The final stage's configuration (what `docker inspect` would show) goes to OUT/image.json.

    dockerfile_chroot.py DOCKERFILE CONTEXT OUT

It knows the images Folio's CPU Dockerfile uses: debian:bookworm and debian:bookworm-slim,
both built by debootstrap's minbase variant, as Debian's official images are. The .dockerignore
is not applied: COPY names exact paths. Run as root; FOLIO_DEBIAN_MIRROR picks the mirror.
"""
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys

IMAGES = {"debian:bookworm": "bookworm", "debian:bookworm-slim": "bookworm"}


def instructions(path):
    """(KEYWORD, argument text) with continuation lines joined and comments dropped."""
    out, cur = [], ""
    for line in open(path):
        line = line.rstrip("\n")
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        key, _, arg = cur.strip().partition(" ")
        out.append((key.upper(), arg.strip()))
        cur = ""
    return out


def sh(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


class Stage:
    def __init__(self, image, name, out, base):
        if image not in IMAGES:
            sys.exit("dockerfile_chroot.py: no recipe for the image %s" % image)
        self.root = os.path.join(out, "stage-" + name)
        self.name, self.env, self.workdir, self.config = name, {}, "/", {}
        shutil.rmtree(self.root, ignore_errors=True)
        sh(["cp", "-a", base, self.root])

    def path(self, p):
        return os.path.join(self.root, os.path.join(self.workdir, p).lstrip("/"))

    def run(self, cmd):
        mounts = []
        try:
            for m in ("proc", "sys", "dev"):
                target = os.path.join(self.root, m)
                sh(["mount", "--rbind", "/" + m, target])
                sh(["mount", "--make-rslave", target])
                mounts.append(target)
            shutil.copy("/etc/resolv.conf", os.path.join(self.root, "etc/resolv.conf"))
            env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
            env.update(self.env)
            os.makedirs(self.path("."), exist_ok=True)
            sh(["chroot", self.root, "/bin/sh", "-c", "cd %s && %s" % (shlex.quote(self.workdir), cmd)], env=env)
        finally:
            for m in reversed(mounts):
                subprocess.run(["umount", "-l", m])

    def copy(self, sources, dest, src_root):
        for pattern in sources:
            matches = sorted(glob.glob(os.path.join(src_root, pattern.lstrip("/"))))
            if not matches:
                sys.exit("dockerfile_chroot.py: COPY %s matches nothing" % pattern)
            for src in matches:
                target = self.path(dest)
                if os.path.isdir(src):  # a directory's contents go into dest
                    sh(["cp", "-a", src + "/.", target + "/"] if os.path.isdir(target) else ["cp", "-a", src, target])
                else:
                    if dest.endswith("/") or len(matches) > 1 or len(sources) > 1:
                        os.makedirs(target, exist_ok=True)
                    sh(["cp", "-a", src, target])


def main():
    dockerfile, context, out = sys.argv[1:4]
    mirror = os.environ.get("FOLIO_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    os.makedirs(out, exist_ok=True)
    bases, stages, st = {}, {}, None
    for key, arg in instructions(dockerfile):
        if key == "FROM":
            words = arg.split()
            image, name = words[0], words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            suite = IMAGES.get(image)
            if suite and suite not in bases:
                bases[suite] = os.path.join(out, "base-" + suite)
                if not os.path.exists(os.path.join(bases[suite], "etc/debian_version")):
                    sh(["debootstrap", "--variant=minbase", suite, bases[suite], mirror], stdout=subprocess.DEVNULL)
            st = stages[name] = Stage(image, name, out, bases.get(suite, ""))
        elif key == "RUN":
            st.run(arg)
        elif key == "COPY":
            words = shlex.split(arg)
            src_root = context
            if words[0].startswith("--from="):
                src_root = stages[words.pop(0)[len("--from="):]].root
            st.copy(words[:-1], words[-1], src_root)
        elif key == "WORKDIR":
            st.workdir = os.path.join(st.workdir, arg)
            os.makedirs(st.path("."), exist_ok=True)
        elif key == "ENV":
            for kv in shlex.split(arg):
                k, _, v = kv.partition("=")
                st.env[k] = v
        elif key in ("USER", "EXPOSE", "VOLUME", "HEALTHCHECK", "ENTRYPOINT", "CMD"):
            st.config[key] = arg
        elif key != "ARG":
            sys.exit("dockerfile_chroot.py: %s is not handled" % key)
    health = st.config.get("HEALTHCHECK", "")
    image = {
        "Root": st.root, "Env": st.env, "User": st.config.get("USER", "root"), "WorkingDir": st.workdir,
        "Entrypoint": json.loads(st.config["ENTRYPOINT"]) if "ENTRYPOINT" in st.config else [],
        "ExposedPorts": st.config.get("EXPOSE", "").split(), "Volumes": st.config.get("VOLUME", "").split(),
        "Healthcheck": health.split(" CMD ", 1)[1] if " CMD " in health else "",
    }
    with open(os.path.join(out, "image.json"), "w") as f:
        json.dump(image, f, indent=1)


main()
