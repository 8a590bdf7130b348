//! The session parameters the proxy keeps equal between a client and the
//! server connection it is lent, so pooled clients never see each other's.

use std::sync::Arc;

/// Parameter names, canonical spelling as the server reports them. All but
/// `extra_float_digits` are GUC_REPORT: the server announces changes with
/// ParameterStatus, which is how a client's own `SET TimeZone` is noticed.
pub const TRACKED: [&str; 7] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "application_name",
    "extra_float_digits",
];

/// Index of a tracked parameter; GUC names are case-insensitive.
pub fn tracked_index(name: &str) -> Option<usize> {
    TRACKED.iter().position(|t| t.eq_ignore_ascii_case(name))
}

/// One value (or "server default") per tracked parameter. Shared, not
/// copied: every client of a pool starts from the pool's welcome values
/// ([`ParamSet::share`]), so an idle client whose settings are the
/// server's holds no text of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSet([Option<Arc<str>>; TRACKED.len()]);

impl ParamSet {
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0[i].as_deref()
    }

    pub fn set(&mut self, i: usize, value: Option<&str>) {
        if self.0[i].as_deref() != value {
            self.0[i] = value.map(Into::into);
        }
    }

    /// Takes `other`'s value of parameter `i`, sharing its text; an equal
    /// value already held is kept.
    pub fn share(&mut self, i: usize, other: &ParamSet) {
        if self.0[i] != other.0[i] {
            self.0[i] = other.0[i].clone();
        }
    }

    /// `on_top`'s values over a shared set (a client's own choices over its
    /// pool's): the set is copied only where a value differs, and then
    /// holds `on_top`'s text, not a copy of it.
    pub fn overlay(set: &mut Arc<ParamSet>, on_top: &ParamSet) {
        for i in 0..TRACKED.len() {
            if on_top.get(i).is_some() && set.get(i) != on_top.get(i) {
                Arc::make_mut(set).share(i, on_top);
            }
        }
    }

    /// [`ParamSet::observe`] on a set shared with others (a client's, which
    /// starts as its pool's): copied first, and only when the value changes.
    pub fn observe_shared(set: &mut Arc<ParamSet>, name: &str, value: &str) {
        if let Some(i) = tracked_index(name) {
            if set.get(i) != Some(value) {
                Arc::make_mut(set).set(i, Some(value));
            }
        }
    }

    /// Records a ParameterStatus if it is a tracked parameter.
    pub fn observe(&mut self, name: &str, value: &str) {
        if let Some(i) = tracked_index(name) {
            self.set(i, Some(value));
        }
    }

    /// The SQL that makes a server with `self` match `wanted`, or None when
    /// they already match. `None` wanted means the server's default: RESET.
    /// Equal text held apart is shared from `wanted` on the way, so the next
    /// comparison of the same pair is of pointers: a server connection's
    /// values come from its own login, and every check-out compared up to
    /// seven strings (about 250 instructions per transaction, callgrind).
    pub fn sync_sql(&mut self, wanted: &ParamSet) -> Option<String> {
        let mut sql = String::new();
        for (i, name) in TRACKED.iter().enumerate() {
            match (&self.0[i], &wanted.0[i]) {
                (Some(have), Some(want)) if Arc::ptr_eq(have, want) => continue,
                (Some(have), Some(want)) if have == want => {
                    self.0[i] = Some(want.clone());
                    continue;
                }
                (None, None) => continue,
                (_, Some(v)) => {
                    sql.push_str("SET ");
                    sql.push_str(name);
                    sql.push_str(" TO ");
                    sql.push_str(&crate::protocol::frontend::quote_literal(v));
                }
                // Nothing known wanted and something set: back to default.
                (Some(_), None) => {
                    sql.push_str("RESET ");
                    sql.push_str(name);
                }
            }
            sql.push(';');
        }
        (!sql.is_empty()).then_some(sql)
    }

    /// After DISCARD/RESET ALL: settings the server does not report are
    /// back at their defaults without a ParameterStatus saying so.
    pub fn forget_unreported(&mut self) {
        self.0[TRACKED.len() - 1] = None;
    }

    /// After a successful sync the server holds what was wanted.
    pub fn adopt(&mut self, wanted: &ParamSet) {
        for i in 0..TRACKED.len() {
            if wanted.get(i).is_some() {
                self.share(i, wanted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_sets_only_differences() {
        let mut have = ParamSet::default();
        have.observe("TimeZone", "UTC");
        have.observe("DateStyle", "ISO, MDY");
        let mut want = have.clone();
        assert_eq!(have.sync_sql(&want), None);
        want.observe("timezone", "Europe/Paris");
        assert_eq!(
            have.sync_sql(&want).unwrap(),
            "SET TimeZone TO 'Europe/Paris';"
        );
        have.adopt(&want);
        assert_eq!(have.sync_sql(&want), None);
    }

    #[test]
    fn shared_values_are_not_copied() {
        let mut pool = ParamSet::default();
        pool.observe("client_encoding", "UTF8");
        pool.observe("TimeZone", "UTC");
        let mut client = ParamSet::default();
        client.observe("client_encoding", "UTF8");
        client.observe("TimeZone", "Europe/Paris");
        let pool = Arc::new(pool);
        let mut wanted = pool.clone();
        ParamSet::overlay(&mut wanted, &client);
        let ptr = |p: &ParamSet, name| p.get(tracked_index(name).unwrap()).unwrap().as_ptr();
        assert_eq!(
            ptr(&wanted, "client_encoding"),
            ptr(&pool, "client_encoding")
        );
        assert_eq!(ptr(&wanted, "TimeZone"), ptr(&client, "TimeZone"));
        assert_eq!(
            wanted.get(tracked_index("TimeZone").unwrap()),
            Some("Europe/Paris")
        );
    }

    #[test]
    fn a_shared_set_is_copied_only_on_a_change() {
        let mut pool = ParamSet::default();
        pool.observe("TimeZone", "UTC");
        let pool = Arc::new(pool);
        let mut client = pool.clone();
        ParamSet::observe_shared(&mut client, "TimeZone", "UTC");
        assert!(Arc::ptr_eq(&client, &pool), "same value: still shared");
        ParamSet::observe_shared(&mut client, "timezone", "Asia/Tokyo");
        assert!(!Arc::ptr_eq(&client, &pool));
        assert_eq!(pool.get(tracked_index("TimeZone").unwrap()), Some("UTC"));
        assert_eq!(
            client.get(tracked_index("TimeZone").unwrap()),
            Some("Asia/Tokyo")
        );
    }

    #[test]
    fn sync_sql_shares_equal_text_on_the_way() {
        let mut pool = ParamSet::default();
        pool.observe("TimeZone", "UTC");
        pool.observe("client_encoding", "UTF8");
        let wanted = Arc::new(pool);
        // A server's own login: the same values, its own text.
        let mut server = ParamSet::default();
        server.observe("TimeZone", "UTC");
        server.observe("client_encoding", "UTF8");
        assert_eq!(server.sync_sql(&wanted), None);
        let tz = tracked_index("TimeZone").unwrap();
        assert!(
            Arc::ptr_eq(
                server.0[tz].as_ref().unwrap(),
                wanted.0[tz].as_ref().unwrap()
            ),
            "equal text is shared after the comparison"
        );

        let mut paris = (*wanted).clone();
        paris.observe("TimeZone", "Europe/Paris");
        assert!(server.sync_sql(&paris).is_some());

        // Set on the server, unknown to the client: a RESET is due.
        let mut digits = ParamSet::default();
        digits.observe("extra_float_digits", "3");
        assert!(digits.sync_sql(&ParamSet::default()).is_some());
        assert_eq!(ParamSet::default().sync_sql(&ParamSet::default()), None);
    }

    #[test]
    fn unknown_wanted_resets() {
        let mut have = ParamSet::default();
        have.observe("extra_float_digits", "3");
        assert_eq!(
            have.sync_sql(&ParamSet::default()).unwrap(),
            "RESET extra_float_digits;"
        );
    }
}
