"""Settings a Python driver sends at startup, through pgwolf:
tests/tests/startup_params.rs runs this file.

    python3 tests/python/startup_settings.py asyncpg|psycopg DSN

asyncpg with server_settings, psycopg with options=-c ...: two clients
with different statement_timeout and search_path, their queries
interleaved (a pool of one in transaction mode runs them on one server
connection), then a third with none, which must see the defaults. Prints
`ok` lines and `done`; any mismatch raises.
"""

import asyncio
import sys


def check(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


async def with_asyncpg(dsn):
    import asyncpg

    a = await asyncpg.connect(dsn, server_settings={"statement_timeout": "1234", "search_path": "a"})
    b = await asyncpg.connect(dsn, server_settings={"search_path": "b"})
    for _ in range(3):
        check(await a.fetchval("SHOW statement_timeout"), "1234ms", "a statement_timeout")
        check(await a.fetchval("SELECT v FROM t"), "a", "a's t")
        check(await b.fetchval("SHOW statement_timeout"), "0", "b statement_timeout")
        check(await b.fetchval("SELECT v FROM t"), "b", "b's t")
    await a.close()
    await b.close()
    c = await asyncpg.connect(dsn)
    check(await c.fetchval("SHOW search_path"), '"$user", public', "c search_path")
    await c.close()
    print("ok asyncpg")


def with_psycopg(dsn):
    import psycopg

    a = psycopg.connect(dsn, options="-c statement_timeout=1234 -c search_path=a", autocommit=True)
    b = psycopg.connect(dsn, options="-c search_path=b", autocommit=True)
    for _ in range(3):
        check(a.execute("SHOW statement_timeout").fetchone()[0], "1234ms", "a statement_timeout")
        check(a.execute("SELECT v FROM t").fetchone()[0], "a", "a's t")
        check(b.execute("SHOW statement_timeout").fetchone()[0], "0", "b statement_timeout")
        check(b.execute("SELECT v FROM t").fetchone()[0], "b", "b's t")
    a.close()
    b.close()
    c = psycopg.connect(dsn, autocommit=True)
    check(c.execute("SHOW search_path").fetchone()[0], '"$user", public', "c search_path")
    c.close()
    print("ok psycopg")


if __name__ == "__main__":
    driver, dsn = sys.argv[1], sys.argv[2]
    if driver == "asyncpg":
        asyncio.run(with_asyncpg(dsn))
    else:
        with_psycopg(dsn)
    print("done")
