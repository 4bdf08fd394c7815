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

# Prints the blobs of a set that a blob folder lacks. The set comes as a difference from a set
# the host recorded earlier ("+hash" / "-hash" lines against BASE), so after a small change
# the query is small; every blob of the set is still checked on the host's disk. Prints FULL
# alone when BASE is unknown here (the client then sends every hash, with BASE "-"). Records
# the set as NEW for next time, keeping the 20 newest records.
# python3 -c SCRIPT BLOBS SETS BASE NEW
MISSING_DELTA_SCRIPT = r"""
import os, sys
blobs, sets, base, new = sys.argv[1:5]
lines = sys.stdin.read().split()
names = set()
if base != "-":
    try:
        with open(os.path.join(sets, base)) as f:
            names = set(f.read().split())
    except OSError:
        print("FULL")
        sys.exit(0)
for line in lines:
    if line[0] == "+":
        names.add(line[1:])
    else:
        names.discard(line[1:])
os.makedirs(sets, exist_ok=True)
tmp = os.path.join(sets, ".%s.%d" % (new, os.getpid()))
with open(tmp, "w") as f:
    f.write("\n".join(sorted(names)))
os.replace(tmp, os.path.join(sets, new))
records = []
for name in os.listdir(sets):
    try:
        records.append((os.path.getmtime(os.path.join(sets, name)), name))
    except OSError:
        pass
for _, name in sorted(records)[:-20]:
    try:
        os.remove(os.path.join(sets, name))
    except OSError:
        pass
for h in sorted(names):
    if not os.path.isfile(os.path.join(blobs, h[:2], h[2:])):
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

# Status of a remote run: its status.json, whether the launcher pid still lives, and whether
# the process group it started does (a launcher killed with SIGKILL leaves its command running).
STATUS_SCRIPT = r"""
import json, os, sys
run_dir, pid = sys.argv[1], int(sys.argv[2])
try:
    status = json.load(open(os.path.join(run_dir, "status.json")))
except (OSError, ValueError):
    status = {}
if not isinstance(status, dict):
    status = {}
try:
    os.kill(pid, 0)
    alive = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
except (OSError, IndexError):
    alive = False
group = False
pgid = status.get("pgid")
if not alive and isinstance(pgid, int) and pgid > 1:
    # a member of the group that is not a zombie (an orphan nobody reaps stays one)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open("/proc/%s/stat" % entry).read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                group = True
                break
status["launcher_alive"] = alive
status["group_alive"] = group
print(json.dumps(status))
"""
