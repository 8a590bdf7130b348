"""Python drivers through pgwolf: tests/tests/prepared.rs runs this file.

    python3 tests/python/drivers.py asyncpg|psycopg|deallocate DSN CLIENTS ROUNDS

Runs CLIENTS concurrent clients, each a mixed workload of ROUNDS rounds
with the driver's own named prepared statements (asyncpg always names
them; psycopg with prepare_threshold=0). Every result is checked here; any
mismatch or error raises and the exit status is non-zero. Prints one line
per client, `client=N backends=B checks=C`, then `done`: B is how many
server connections the client's transactions ran on. `deallocate` is one
client going through SQL DEALLOCATE of protocol-level statements with
libpq's own calls, where the statement names are the test's.
"""

import asyncio
import sys
import threading


def check(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


async def asyncpg_client(dsn, n, rounds):
    import asyncpg

    conn = await asyncpg.connect(dsn)
    backends, checks = set(), 0
    try:
        concat = await conn.prepare("SELECT $1::text || '-' || $2::int")
        for i in range(rounds):
            backends.add(await conn.fetchval("SELECT pg_backend_pid()"))
            check(await conn.fetchval("SELECT $1::int8 * 2", i + n), (i + n) * 2, "double")
            check(await concat.fetchval(f"c{n}", i), f"c{n}-{i}", "prepared concat")
            rows = await conn.fetch("SELECT g, g * g AS sq FROM generate_series(1, $1::int) g", i % 7 + 1)
            check([(r["g"], r["sq"]) for r in rows], [(g, g * g) for g in range(1, i % 7 + 2)], "rows")
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE IF NOT EXISTS items (k int, v text) ON COMMIT DELETE ROWS")
                await conn.executemany("INSERT INTO items VALUES ($1, $2)", [(k, f"v{k}") for k in range(5)])
                check(await conn.fetchval("SELECT sum(k) FROM items WHERE v LIKE $1", "v%"), 10, "batch sum")
            try:
                await conn.fetchval("SELECT 1 / $1::int", 0)
                raise AssertionError("division by zero did not fail")
            except asyncpg.exceptions.DivisionByZeroError:
                pass
            check(await conn.fetchval("SELECT $1::text", "after error"), "after error", "after error")
            checks += 6
    finally:
        await conn.close()
    return n, len(backends), checks


def run_asyncpg(dsn, clients, rounds):
    async def main():
        return await asyncio.gather(*(asyncpg_client(dsn, n, rounds) for n in range(clients)))

    return asyncio.run(main())


def psycopg_client(dsn, n, rounds, out):
    import psycopg

    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        # A small client-side cache: psycopg closes its oldest statements as
        # it goes, so Close travels through pgwolf too.
        conn.prepared_max = 4
        backends, checks = set(), 0
        for i in range(rounds):
            backends.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
            check(conn.execute("SELECT %s::int8 * 2", (i + n,)).fetchone()[0], (i + n) * 2, "double")
            check(conn.execute("SELECT %s::text || '-' || %s::int", (f"c{n}", i)).fetchone()[0], f"c{n}-{i}", "concat")
            # More distinct statements than prepared_max.
            k = i % 6
            check(conn.execute(f"SELECT {k} + %s::int", (i,)).fetchone()[0], k + i, "rotating")
            with conn.transaction():
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS items (k int, v text) ON COMMIT DELETE ROWS")
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO items VALUES (%s, %s)", [(j, f"v{j}") for j in range(5)])
                check(conn.execute("SELECT sum(k) FROM items WHERE v LIKE %s", ("v%",)).fetchone()[0], 10, "batch sum")
            with conn.pipeline():
                cursors = [conn.execute("SELECT %s::int + 1", (j,)) for j in range(5)]
            check([c.fetchone()[0] for c in cursors], [j + 1 for j in range(5)], "pipeline")
            try:
                conn.execute("SELECT 1 / %s::int", (0,))
                raise AssertionError("division by zero did not fail")
            except psycopg.errors.DivisionByZero:
                pass
            check(conn.execute("SELECT %s::text", ("after error",)).fetchone()[0], "after error", "after error")
            checks += 7
    out[n] = (n, len(backends), checks)


def run_psycopg(dsn, clients, rounds):
    out = [None] * clients
    errors = []

    def guarded(n):
        try:
            psycopg_client(dsn, n, rounds, out)
        except BaseException as e:  # reported by the main thread
            errors.append(f"client {n}: {e!r}")

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("\n".join(errors))
    return out


def run_deallocate(dsn, clients, rounds):
    import psycopg
    from psycopg import pq

    conn = psycopg.connect(dsn, autocommit=True)
    pg = conn.pgconn
    checks = 0

    def ok(res, status, what):
        nonlocal checks
        err = res.error_message.decode(errors="replace")
        check((res.status, res.command_status), (status[0], status[1]), f"{what} ({err})")
        checks += 1

    def fails(res, sqlstate, what):
        nonlocal checks
        check(res.status, pq.ExecStatus.FATAL_ERROR, what)
        check(res.error_field(pq.DiagnosticField.SQLSTATE), sqlstate, what)
        checks += 1

    def value(res):
        check(res.status, pq.ExecStatus.TUPLES_OK, res.error_message)
        return res.get_value(0, 0)

    command = (pq.ExecStatus.COMMAND_OK, b"DEALLOCATE")
    prepared = (pq.ExecStatus.COMMAND_OK, b"")
    # Between transactions.
    ok(pg.prepare(b"mine1", b"SELECT $1::text || '!'"), prepared, "prepare mine1")
    check(value(pg.exec_prepared(b"mine1", [b"a"])), b"a!", "mine1")
    ok(pg.exec_(b"DEALLOCATE mine1"), command, "DEALLOCATE mine1")
    fails(pg.exec_prepared(b"mine1", [b"b"]), b"26000", "mine1 after DEALLOCATE")
    # Inside a transaction, which carries on afterwards; a quoted name.
    ok(pg.prepare(b"Mine2", b"SELECT $1::int4 * 3"), prepared, "prepare Mine2")
    ok(pg.exec_(b"BEGIN"), (pq.ExecStatus.COMMAND_OK, b"BEGIN"), "BEGIN")
    check(value(pg.exec_prepared(b"Mine2", [b"2"])), b"6", "Mine2")
    ok(pg.exec_(b'DEALLOCATE PREPARE "Mine2";'), command, "DEALLOCATE Mine2")
    check(value(pg.exec_(b"SELECT 7")), b"7", "the transaction goes on")
    ok(pg.exec_(b"COMMIT"), (pq.ExecStatus.COMMAND_OK, b"COMMIT"), "COMMIT")
    fails(pg.exec_prepared(b"Mine2", [b"1"]), b"26000", "Mine2 after DEALLOCATE")
    # In a failed transaction it is ignored, as PostgreSQL ignores it.
    ok(pg.prepare(b"mine3", b"SELECT $1::int4 - 1"), prepared, "prepare mine3")
    ok(pg.exec_(b"BEGIN"), (pq.ExecStatus.COMMAND_OK, b"BEGIN"), "BEGIN")
    fails(pg.exec_(b"SELECT 1/0"), b"22012", "1/0")
    fails(pg.exec_(b"DEALLOCATE mine3"), b"25P02", "DEALLOCATE in a failed transaction")
    ok(pg.exec_(b"ROLLBACK"), (pq.ExecStatus.COMMAND_OK, b"ROLLBACK"), "ROLLBACK")
    check(value(pg.exec_prepared(b"mine3", [b"10"])), b"9", "mine3 still prepared")
    # SQL-level statements still reach the server.
    ok(pg.exec_(b"PREPARE sql1 AS SELECT 1"), (pq.ExecStatus.COMMAND_OK, b"PREPARE"), "PREPARE")
    fails(pg.exec_(b"DEALLOCATE nosuch"), b"26000", "DEALLOCATE of an unknown name")
    conn.close()
    return [(0, 1, checks)]


def main():
    driver, dsn, clients, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    run = {"asyncpg": run_asyncpg, "psycopg": run_psycopg, "deallocate": run_deallocate}[driver]
    for n, backends, checks in run(dsn, clients, rounds):
        print(f"client={n} backends={backends} checks={checks}")
    print("done")


if __name__ == "__main__":
    main()
