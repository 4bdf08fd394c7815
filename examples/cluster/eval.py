import socket

print(f"evaluating on {socket.gethostname()}")
