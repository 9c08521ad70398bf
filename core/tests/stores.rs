//! The conformance suite against every store this build has.

#[macro_use]
mod conformance;

mod memory {
    use callbook::{MemoryStore, Store};
    use std::sync::Arc;

    fn make() -> Arc<dyn Store> {
        Arc::new(MemoryStore::default())
    }
    conformance_suite!(make);
}

mod sqlite {
    use callbook::{SqliteOptions, SqliteStore, Store, Synchronous};
    use std::sync::Arc;

    fn make() -> Arc<dyn Store> {
        // Each test gets its own file; the directory is removed when the process ends.
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let options = SqliteOptions { synchronous: Synchronous::Normal, ..SqliteOptions::default() };
        Arc::new(SqliteStore::open_with(dir.join("callbook.db"), options).expect("opens"))
    }
    conformance_suite!(make);
}
