//! Queries through pgwolf: simple and extended protocol, errors, transactions.
//!
//! Transaction-mode fixtures here use a pool of one server connection where
//! the test calls tokio-postgres's `query`/`prepare`: those prepare a named
//! statement in one round trip and bind it in the next, which over several
//! server connections needs pgwolf's prepared-statement support; that is
//! tested on its own in pooling.rs.

use pgwolf_tests::clients::{psql_ok, sqlstate};
use pgwolf_tests::{within, Fixture, PoolMode};
use tokio_postgres::types::Type;
use tokio_postgres::SimpleQueryMessage;

fn simple_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(String::from))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_protocol() {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let client = fx.connect().await;
    let messages = within(
        10,
        "simple query",
        client.simple_query("SELECT 1 AS one, 'two' AS two, NULL AS three"),
    )
    .await
    .unwrap();
    assert_eq!(
        simple_rows(&messages),
        vec![vec![Some("1".into()), Some("two".into()), None]]
    );

    // Several statements in one Query message: each result comes back.
    let messages = within(
        10,
        "multi-statement query",
        client.simple_query("SELECT 1; SELECT 2, 3; SELECT 'x' FROM generate_series(1, 3)"),
    )
    .await
    .unwrap();
    let rows = simple_rows(&messages);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[1], vec![Some("2".into()), Some("3".into())]);
    let completes = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completes, 3);

    let messages = client
        .simple_query("SELECT current_user, current_database()")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&messages),
        vec![vec![Some("app".into()), Some("appdb".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_with_parameters() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let client = fx.connect().await;

    // Named statement: prepare once, execute with different parameters.
    let stmt = within(
        10,
        "prepare",
        client.prepare("SELECT $1::int4 + 1, $2::text || '!'"),
    )
    .await
    .unwrap();
    assert_eq!(stmt.params(), &[Type::INT4, Type::TEXT]);
    for i in 0..5i32 {
        let row = within(10, "query prepared", client.query_one(&stmt, &[&i, &"hi"]))
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        assert_eq!(row.get::<_, &str>(1), "hi!");
    }

    // `query` with a string (prepare + bind behind the scenes).
    let rows = within(
        10,
        "query with params",
        client.query("SELECT $1::int4 * 10 FROM generate_series(1, 3)", &[&1i32]),
    )
    .await
    .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
        vec![10, 10, 10]
    );

    // Unnamed statement: Parse/Bind/Execute/Sync in one round trip.
    let rows = within(
        10,
        "query_typed",
        client.query_typed(
            "SELECT $1::int8 + $2::int8",
            &[(&40i64, Type::INT8), (&2i64, Type::INT8)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 42);

    // Binary results of several types survive the trip.
    let row = client
        .query_one(
            "SELECT $1::float8, $2::bool, $3::bytea, NULL::int4",
            &[&1.5f64, &true, &vec![0u8, 255, 7]],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), 1.5);
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, Vec<u8>>(2), vec![0u8, 255, 7]);
    assert_eq!(row.get::<_, Option<i32>>(3), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_the_connection_usable() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let client = fx.connect().await;

    let err = client
        .simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("42P01"), "{err:?}");
    let err = client
        .query("SELECT 1 / $1::int4", &[&0i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("22012"), "{err:?}");
    let err = client.prepare("SELEC 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), Some("42601"), "{err:?}");

    // An error inside a transaction aborts it until ROLLBACK.
    client.batch_execute("BEGIN").await.unwrap();
    let err = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&err), Some("22012"));
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), Some("25P02"), "{err:?}");
    client.batch_execute("ROLLBACK").await.unwrap();

    let row = within(10, "query after errors", client.query_one("SELECT 7", &[]))
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_roll_back() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let mut client = fx.connect().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1, 'kept')", &[])
        .await
        .unwrap();
    tx.execute("INSERT INTO t VALUES ($1, $2)", &[&2i32, &"also kept"])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (3, 'gone')", &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    // Another client, and PostgreSQL directly, see exactly the committed rows.
    let other = fx.connect().await;
    let rows = other
        .query("SELECT id FROM t ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let direct = fx.connect_direct().await;
    let row = direct
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn larger_rows_and_messages() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let client = fx.connect().await;
    // A 4 MB parameter and a 4 MB result value: messages larger than any buffer.
    let big = "y".repeat(4 << 20);
    let row = within(
        30,
        "big value round trip",
        client.query_one("SELECT length($1::text), $1::text", &[&big]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, i32>(0), 4 << 20);
    assert_eq!(row.get::<_, &str>(1), big);
    let rows = within(
        30,
        "10k rows",
        client.query(
            "SELECT g, md5(g::text) FROM generate_series(1, 10000) g",
            &[],
        ),
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 10_000);
    assert_eq!(rows[9_999].get::<_, i32>(0), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_through_pgwolf() {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let out = fx.psql("SELECT current_user || '@' || current_database()");
    assert_eq!(psql_ok(&out), "app@appdb");
    let out = fx.psql("SELECT count(*) FROM generate_series(1, 1000)");
    assert_eq!(psql_ok(&out), "1000");
    let out = fx.psql("SELECT nope");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("column \"nope\" does not exist"));
}
