"""What the benchmark scripts share: the repository's root, a release build
of kflow, and a build context for an image FROM scratch with busybox."""

import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_kflow():
    """Builds kflow in release mode; returns the binary's path."""
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "kflow"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "kflow")


def busybox_context(path):
    """Writes, in a new folder, a build context for an image FROM scratch
    holding the host's static busybox."""
    os.makedirs(path)
    shutil.copy(shutil.which("busybox"), os.path.join(path, "busybox"))
    with open(os.path.join(path, "Dockerfile"), "w") as f:
        f.write('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
