//! The store contract suite on SQLite with the metric journal on (as `kiln server` opens its
//! embedded store): plain metric writes are acknowledged by the journal and folded in later,
//! and every contract still holds.

use std::ops::Deref;

use kiln_store_sql::{OpenOptions, SqlStore};

struct JournalFixture {
    store: SqlStore,
    _dir: tempfile::TempDir,
}

impl Deref for JournalFixture {
    type Target = SqlStore;
    fn deref(&self) -> &SqlStore {
        &self.store
    }
}

fn journal_store() -> Option<JournalFixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    let uri = format!("sqlite://{}", dir.path().join("kiln.db").display());
    let options = OpenOptions {
        journal: true,
        ..Default::default()
    };
    let store = SqlStore::open(&uri, &options).expect("open SQLite store with a journal");
    Some(JournalFixture { store, _dir: dir })
}

kiln_store::contract_tests!(journal_store());
