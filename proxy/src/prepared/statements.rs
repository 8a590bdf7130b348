//! Who has which prepared statement: each client's names for its
//! statements, and each server connection's bounded cache of the
//! statements prepared on it under pgwolf's own names.
//!
//! A statement is its definition (query text and parameter types); clients
//! may call the same definition by different names, and every server
//! connection prepares it once, as `pgwolf_<id>`.

use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a client defined with Parse, shared by its name entries and the
/// server caches that hold it.
#[derive(Debug, PartialEq, Eq)]
pub struct Statement {
    pub id: u64,
    /// Parse body after the name: query text, NUL, parameter types.
    pub definition: Bytes,
    /// `pgwolf_<id in hex>`, made once: every Bind of it is renamed.
    name: [u8; 23],
}

impl Statement {
    pub fn new(definition: Bytes) -> Arc<Self> {
        // SipHash with fixed keys: the same definition gets the same id in
        // every pool of the process, so servers shared by clients reuse it.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        definition.hash(&mut h);
        Statement::with_id(h.finish(), definition)
    }

    /// A statement with a given id (tests forge collisions with it).
    pub fn with_id(id: u64, definition: Bytes) -> Arc<Self> {
        let mut name = *b"pgwolf_0000000000000000";
        for (i, b) in name[7..].iter_mut().enumerate() {
            *b = b"0123456789abcdef"[(id >> (60 - 4 * i)) as usize & 0xf];
        }
        Arc::new(Statement {
            id,
            definition,
            name,
        })
    }

    /// The name the statement has on a server connection.
    pub fn server_name(&self) -> &[u8] {
        &self.name
    }
}

/// One client's statement names. Unnamed statements never appear here:
/// they pass through untouched.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Box<[u8]>, Arc<Statement>>,
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.by_name.get(name)
    }

    /// Defines `name`; returns what it named before (the caller decides
    /// whether that is an error, as PostgreSQL's 42P05 is).
    pub fn define(&mut self, name: &[u8], stmt: Arc<Statement>) -> Option<Arc<Statement>> {
        self.by_name.insert(name.into(), stmt)
    }

    /// Close('S') or DEALLOCATE name.
    pub fn remove(&mut self, name: &[u8]) -> Option<Arc<Statement>> {
        self.by_name.remove(name)
    }

    /// DEALLOCATE ALL or DISCARD ALL.
    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Statements prepared on one server connection, at most `capacity`, least
/// recently used evicted first. Kept with the connection while it is idle
/// in the pool, so the next client finds them prepared.
#[derive(Debug)]
pub struct ServerStatements {
    capacity: usize,
    entries: HashMap<u64, Entry>,
    clock: u64,
    /// The clock when the current client was lent this connection: entries
    /// used since then are not evicted (see [`ServerStatements::start_lease`]).
    lease_start: u64,
}

#[derive(Debug)]
struct Entry {
    stmt: Arc<Statement>,
    last_used: u64,
}

/// What [`ServerStatements::admit`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Already prepared on this server.
    Hit,
    /// Not prepared: send Parse first. `evict` names a statement to Close
    /// on the server to stay within capacity.
    Miss { evict: Option<Arc<Statement>> },
}

impl ServerStatements {
    pub fn new(capacity: usize) -> Self {
        ServerStatements {
            capacity,
            entries: HashMap::new(),
            clock: 0,
            lease_start: 0,
        }
    }

    /// A client is lent this connection. Until the next lease, statements
    /// it uses are never evicted: closing a statement on the server closes
    /// the portals built from it, which the client may still execute (a
    /// pipeline, or a cursor read in steps within a transaction). The cache
    /// may then grow past capacity by what one transaction uses; it shrinks
    /// again one entry per later miss.
    pub fn start_lease(&mut self) {
        self.lease_start = self.clock;
    }

    /// The configured bound may change on reload; it applies from the next
    /// admission (entries over it are evicted one per miss).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Records a use of `stmt` and says whether the server has it. A miss
    /// counts it as prepared from now on: the caller sends the Parse, and
    /// calls [`ServerStatements::forget`] if the server refuses it.
    pub fn admit(&mut self, stmt: &Arc<Statement>) -> Admit {
        self.clock += 1;
        if let Some(e) = self.entries.get_mut(&stmt.id) {
            // Ids are 64-bit hashes: a collision must not run the wrong query.
            if e.stmt.definition == stmt.definition {
                e.last_used = self.clock;
                return Admit::Hit;
            }
            let old = self.entries.remove(&stmt.id).map(|e| e.stmt);
            self.insert(stmt);
            return Admit::Miss { evict: old };
        }
        let evict = if self.entries.len() >= self.capacity {
            self.evict_lru()
        } else {
            None
        };
        self.insert(stmt);
        Admit::Miss { evict }
    }

    fn insert(&mut self, stmt: &Arc<Statement>) {
        self.entries.insert(
            stmt.id,
            Entry {
                stmt: stmt.clone(),
                last_used: self.clock,
            },
        );
    }

    /// O(capacity), paid only on a miss with a full cache, next to a round
    /// trip to the server; no list to maintain on every hit.
    fn evict_lru(&mut self) -> Option<Arc<Statement>> {
        let id = *self
            .entries
            .iter()
            .filter(|(_, e)| e.last_used <= self.lease_start)
            .min_by_key(|(_, e)| e.last_used)?
            .0;
        self.entries.remove(&id).map(|e| e.stmt)
    }

    /// The server does not have it after all (its Parse failed or was
    /// skipped after an earlier error).
    pub fn forget(&mut self, stmt: &Statement) {
        if self
            .entries
            .get(&stmt.id)
            .is_some_and(|e| e.stmt.definition == stmt.definition)
        {
            self.entries.remove(&stmt.id);
        }
    }

    /// The server still has it (the Close that was to evict it was
    /// skipped): track it again, even past capacity, so it is never
    /// prepared twice under the same name.
    pub fn keep(&mut self, stmt: &Arc<Statement>) {
        self.clock += 1;
        self.insert(stmt);
    }

    pub fn contains(&self, stmt: &Statement) -> bool {
        self.entries
            .get(&stmt.id)
            .is_some_and(|e| e.stmt.definition == stmt.definition)
    }

    /// The server was reset (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Pool-wide counters for the admin console and metrics (issue 6).
#[derive(Debug, Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
}

impl Counters {
    pub fn record(&self, admit: &Admit) {
        match admit {
            Admit::Hit => self.hits.fetch_add(1, Ordering::Relaxed),
            Admit::Miss { evict: None } => self.misses.fetch_add(1, Ordering::Relaxed),
            Admit::Miss { evict: Some(_) } => {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                self.misses.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(q: &str) -> Arc<Statement> {
        let mut d = q.as_bytes().to_vec();
        d.extend_from_slice(b"\0\0\0");
        Statement::new(Bytes::from(d))
    }

    #[test]
    fn same_definition_same_id_and_server_name() {
        let a = stmt("SELECT 1");
        let b = stmt("SELECT 1");
        let c = stmt("SELECT 2");
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        let name = a.server_name();
        assert!(name.starts_with(b"pgwolf_"));
        assert_eq!(name, b.server_name());
        assert_eq!(&name[7..], format!("{:016x}", a.id).as_bytes());
    }

    #[test]
    fn client_names_define_replace_remove_clear() {
        let mut c = ClientStatements::default();
        assert!(c.define(b"S_1", stmt("SELECT 1")).is_none());
        assert_eq!(
            c.get(b"S_1").unwrap().definition,
            stmt("SELECT 1").definition
        );
        let old = c.define(b"S_1", stmt("SELECT 2")).unwrap();
        assert_eq!(old.id, stmt("SELECT 1").id);
        assert!(c.remove(b"S_1").is_some());
        assert!(c.get(b"S_1").is_none());
        c.define(b"a", stmt("SELECT 1"));
        c.define(b"b", stmt("SELECT 2"));
        assert_eq!(c.len(), 2);
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn server_cache_hits_misses_and_evicts_least_recently_used() {
        let mut s = ServerStatements::new(2);
        let (a, b, c) = (stmt("a"), stmt("b"), stmt("c"));
        assert_eq!(s.admit(&a), Admit::Miss { evict: None });
        assert_eq!(s.admit(&b), Admit::Miss { evict: None });
        s.start_lease();
        assert_eq!(s.admit(&a), Admit::Hit);
        // b is now the least recently used.
        assert_eq!(
            s.admit(&c),
            Admit::Miss {
                evict: Some(b.clone())
            }
        );
        assert!(s.contains(&a) && s.contains(&c) && !s.contains(&b));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn what_the_current_lease_used_is_never_evicted() {
        let mut s = ServerStatements::new(1);
        let (a, b, c) = (stmt("a"), stmt("b"), stmt("c"));
        s.start_lease();
        assert_eq!(s.admit(&a), Admit::Miss { evict: None });
        // A portal of a's may still be executed: b goes past capacity.
        assert_eq!(s.admit(&b), Admit::Miss { evict: None });
        assert_eq!(s.len(), 2);
        s.start_lease();
        assert_eq!(
            s.admit(&c),
            Admit::Miss {
                evict: Some(a.clone())
            }
        );
        assert!(s.contains(&b) && s.contains(&c));
    }

    #[test]
    fn forget_undoes_a_failed_prepare() {
        let mut s = ServerStatements::new(10);
        let a = stmt("SELEC 1");
        assert!(matches!(s.admit(&a), Admit::Miss { .. }));
        s.forget(&a);
        assert!(!s.contains(&a));
        assert!(matches!(s.admit(&a), Admit::Miss { .. }));
    }

    #[test]
    fn an_id_collision_is_a_miss_not_the_wrong_query() {
        let mut s = ServerStatements::new(10);
        let a = stmt("SELECT 1");
        let forged = Statement::with_id(a.id, Bytes::from_static(b"DELETE FROM t\0\0\0"));
        s.admit(&a);
        assert_eq!(
            s.admit(&forged),
            Admit::Miss {
                evict: Some(a.clone())
            }
        );
        assert!(s.contains(&forged) && !s.contains(&a));
    }

    #[test]
    fn counters_follow_admissions() {
        let counters = Counters::default();
        let mut s = ServerStatements::new(1);
        for q in ["a", "a", "b"] {
            s.start_lease();
            counters.record(&s.admit(&stmt(q)));
        }
        assert_eq!(counters.hits.load(Ordering::Relaxed), 1);
        assert_eq!(counters.misses.load(Ordering::Relaxed), 2);
        assert_eq!(counters.evictions.load(Ordering::Relaxed), 1);
    }
}
