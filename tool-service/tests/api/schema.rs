//! The schema is ready to be distributed by user (Citus, or one database
//! per range of users): every table carries `user_id`, and every primary
//! key, unique index and foreign key includes it. PostgreSQL only (SQLite
//! is one file on one machine).

use taskagent_testkit::{TestDatabase, plain_client};

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_and_key_leads_with_the_user() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    // Starting tool-service migrates the database.
    let app = TestApp::spawn(&db, &[]).await;
    let client = plain_client(&db.direct_url()).await;
    let ours = "n.nspname = 'public' AND c.relname NOT LIKE '\\_\\_diesel%'";

    let tables = client
        .query(
            &format!(
                "SELECT c.relname, a.attnotnull FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' \
                 WHERE c.relkind = 'r' AND {ours}"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        tables.len(),
        4,
        "tasks, conversations, messages, idempotency_keys"
    );
    for row in &tables {
        let (table, not_null): (String, Option<bool>) = (row.get(0), row.get(1));
        assert_eq!(not_null, Some(true), "{table}: user_id NOT NULL");
    }

    let keys = client
        .query(
            &format!(
                "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x \
                 JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE (x.indisunique OR x.indisprimary) AND {ours}"
            ),
            &[],
        )
        .await
        .unwrap();
    assert!(
        keys.len() >= 7,
        "primary keys and unique indexes: {}",
        keys.len()
    );
    for row in &keys {
        let (name, definition): (String, String) = (row.get(0), row.get(1));
        assert!(
            definition.contains("(user_id"),
            "{name} does not lead with user_id: {definition}"
        );
    }

    let references = client
        .query(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE contype = 'f' AND connamespace = 'public'::regnamespace",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        references.len(),
        2,
        "messages and idempotency_keys -> conversations"
    );
    for row in &references {
        let (name, definition): (String, String) = (row.get(0), row.get(1));
        assert!(
            definition.starts_with("FOREIGN KEY (user_id, ")
                && definition.contains("(user_id, id)"),
            "{name}: {definition}"
        );
    }
    app.stop().await;
}
