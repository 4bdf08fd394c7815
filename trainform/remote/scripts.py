"""Small standard-library Python programs run on targets with `python3 -c` (over SSH, or in a
container): the target needs no trainform install."""

# Prints the hashes (one per line on stdin) that are missing from a blob folder.
MISSING_SCRIPT = r"""
import os, sys
root = sys.argv[1]
for h in sys.stdin.read().split():
    if not os.path.isfile(os.path.join(root, h[:2], h[2:])):
        print(h)
"""

# Reads a file from an offset: python3 -c SCRIPT PATH OFFSET LIMIT
READ_SCRIPT = r"""
import os, sys
path, offset, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    with open(path, "rb") as fh:
        fh.seek(offset)
        sys.stdout.buffer.write(fh.read(limit))
except FileNotFoundError:
    pass
"""

# Status of a remote run: its status.json plus whether the launcher pid still lives.
STATUS_SCRIPT = r"""
import json, os, sys
run_dir, pid = sys.argv[1], int(sys.argv[2])
try:
    status = json.load(open(os.path.join(run_dir, "status.json")))
except (OSError, ValueError):
    status = {}
try:
    os.kill(pid, 0)
    alive = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
except (OSError, IndexError):
    alive = False
status["launcher_alive"] = alive
print(json.dumps(status))
"""
