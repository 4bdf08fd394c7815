"""Two ranks meet over TCP at MASTER_ADDR:MASTER_PORT, as torch.distributed would."""

import os
import socket
import time

rank = int(os.environ["NODE_RANK"])
master, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
print(f"rank {rank} of {os.environ['WORLD_SIZE']} on {socket.gethostname()}", flush=True)
if rank == 0:
    with socket.create_server(("0.0.0.0", port)) as server:
        conn, (peer, _) = server.accept()
        print(f"rank 0 got {conn.recv(100).decode()!r} from {peer}", flush=True)
else:
    for _ in range(100):
        try:
            conn = socket.create_connection((master, port), timeout=5)
            break
        except OSError:
            time.sleep(0.1)
    conn.sendall(b"hello from rank 1")
conn.close()
time.sleep(3)  # long enough to see the third run wait in the queue
out = os.environ["TRAINFORM_OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, f"rank{rank}.txt"), "w") as fh:
    fh.write("done\n")
