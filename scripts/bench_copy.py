"""The independent floor for ingest: raw psycopg binary COPY of precomputed vectors.

Run by the `hot_paths` benchmark (benches/src/bin/hot_paths.rs), not by hand:
    python3 scripts/bench_copy.py URL TABLE VECTORS_FILE ROWS DIMS
VECTORS_FILE holds ROWS x DIMS little-endian float32s. Writes the rows the way pgvector-python's
README bulk-loads them (COPY ... FORMAT BINARY, copy.write_row with numpy arrays), with the same
titles and content as the SDK's run, in one transaction, and prints one JSON line: the COPY's
wall time, this process's CPU time and the CPU time of the server process serving the
connection over the same span (reading the file and importing modules are outside all three).
"""
import json
import sys
import time

import numpy as np
import psycopg
from pgvector.psycopg import register_vector


def main() -> None:
    url, table, path, rows, dims = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    data = np.fromfile(path, dtype="<f4", count=rows * dims).reshape(rows, dims)
    with psycopg.connect(url) as conn:
        register_vector(conn)
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        server = backend_cpu(backend)
        wall, cpu = time.perf_counter(), time.process_time()
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} (title, content, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["varchar", "text", "vector"])
                for i in range(rows):
                    copy.write_row((f"doc {i}", "body", data[i]))
        conn.commit()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server = backend_cpu(backend) - server
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "server_cpu_s": server, "rows": rows}))


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the server process serving this connection (same machine)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100.0
    except OSError:
        return float("nan")


if __name__ == "__main__":
    main()
