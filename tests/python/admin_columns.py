"""Column names and type OIDs of admin console SHOW commands, as JSON.

    python3 tests/python/admin_columns.py DSN COMMAND...

tests/tests/admin_compat.rs runs it against PgBouncer and against pgwolf
and compares. libpq's own calls (psycopg's pq layer): the console speaks
the simple query protocol only.
"""

import json
import sys

import psycopg
from psycopg import pq


def main():
    dsn, commands = sys.argv[1], sys.argv[2:]
    conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)
    out = {}
    for cmd in commands:
        r = conn.pgconn.exec_(cmd.encode())
        if r.status != pq.ExecStatus.TUPLES_OK:
            out[cmd] = {"error": r.error_message.decode(errors="replace").strip()}
            continue
        out[cmd] = {
            "columns": [[r.fname(i).decode(), r.ftype(i)] for i in range(r.nfields)],
            "tag": r.command_status.decode(),
            "rows": [[None if r.get_value(j, i) is None else r.get_value(j, i).decode()
                      for i in range(r.nfields)] for j in range(r.ntuples)],
        }
    conn.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
