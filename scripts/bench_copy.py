"""The independent floor for ingest: raw psycopg binary COPY of precomputed vectors.

Run by the `hot_paths` benchmark (benches/src/bin/hot_paths.rs), not by hand:
    python3 scripts/bench_copy.py URL TABLE VECTORS_FILE ROWS DIMS
VECTORS_FILE holds ROWS x DIMS little-endian float32s. Writes the rows the way pgvector-python's
README bulk-loads them (COPY ... FORMAT BINARY, copy.write_row with numpy arrays), with the same
titles and content as the SDK's run, in one transaction, and prints one JSON line: the COPY's
wall time and this process's CPU time over the same span (reading the file and importing
modules are outside both).
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
        wall, cpu = time.perf_counter(), time.process_time()
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} (title, content, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["varchar", "text", "vector"])
                for i in range(rows):
                    copy.write_row((f"doc {i}", "body", data[i]))
        conn.commit()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "rows": rows}))


if __name__ == "__main__":
    main()
