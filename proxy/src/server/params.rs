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

/// Settings beyond [`TRACKED`] that a client sent at startup
/// (`search_path`, `statement_timeout`, `options=-c ...`), sorted by name,
/// names lower-case. Shared between a client and the server connections
/// they were set on, so an unchanged set compares by pointer.
pub type Extras = Arc<[(Box<str>, Box<str>)]>;

/// One value (or "server default") per tracked parameter, and the
/// client's extra settings (None: none). Shared, not copied: every client
/// of a pool starts from the pool's welcome values ([`ParamSet::share`]),
/// so an idle client whose settings are the server's holds no text of its
/// own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSet([Option<Arc<str>>; TRACKED.len()], Option<Extras>);

impl ParamSet {
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0[i].as_deref()
    }

    /// The extra settings, for a client: sorted and de-duplicated here.
    pub fn set_extras(&mut self, mut extras: Vec<(String, String)>) {
        // The last of a name wins, as in PostgreSQL's startup processing.
        extras.reverse();
        extras.sort_by(|a, b| a.0.cmp(&b.0));
        extras.dedup_by(|a, b| a.0 == b.0);
        self.1 = (!extras.is_empty()).then(|| {
            extras
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect()
        });
    }

    /// The extra settings as one shared set, if any.
    pub fn extras(&self) -> Option<&Extras> {
        self.1.as_ref()
    }

    /// Replaces the extra settings with an equal set held elsewhere.
    pub fn share_extras(&mut self, extras: Extras) {
        debug_assert!(self.1.as_ref() == Some(&extras));
        self.1 = Some(extras);
    }

    /// The value of extra setting `name` (lower-case), if the client sent it.
    pub fn extra(&self, name: &str) -> Option<&str> {
        let all = self.1.as_deref()?;
        all.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
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
        if on_top.1.is_some() && set.1 != on_top.1 {
            Arc::make_mut(set).1 = on_top.1.clone();
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
        self.extras_sql(wanted, &mut sql);
        (!sql.is_empty()).then_some(sql)
    }

    /// The extra settings' part of [`ParamSet::sync_sql`]: RESET what the
    /// server has and `wanted` does not, SET what differs. Both without
    /// extras (nearly every client) is one comparison.
    fn extras_sql(&mut self, wanted: &ParamSet, sql: &mut String) {
        let (have, want) = match (&self.1, &wanted.1) {
            (None, None) => return,
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => return,
            (have, want) => (
                have.as_deref().unwrap_or(&[]),
                want.as_deref().unwrap_or(&[]),
            ),
        };
        let before = sql.len();
        for (name, _) in have {
            if !want.iter().any(|(n, _)| n == name) {
                sql.push_str("RESET ");
                sql.push_str(name);
                sql.push(';');
            }
        }
        for (name, value) in want {
            if have.iter().any(|(n, v)| n == name && v == value) {
                continue;
            }
            sql.push_str("SET ");
            sql.push_str(name);
            sql.push_str(" TO ");
            sql.push_str(&crate::protocol::frontend::quote_literal(value));
            sql.push(';');
        }
        if sql.len() == before {
            // Equal sets held apart: share, so the next check is a pointer.
            self.1 = wanted.1.clone();
        }
    }

    /// RESETs of every extra setting a client left on this connection, now
    /// forgotten; None when there are none.
    pub fn reset_extras(&mut self) -> Option<String> {
        let extras = self.1.take()?;
        Some(extras.iter().map(|(n, _)| format!("RESET {n};")).collect())
    }

    /// After DISCARD/RESET ALL: settings the server does not report are
    /// back at their defaults without a ParameterStatus saying so.
    pub fn forget_unreported(&mut self) {
        self.0[TRACKED.len() - 1] = None;
        self.1 = None;
    }

    /// After a successful sync the server holds what was wanted.
    pub fn adopt(&mut self, wanted: &ParamSet) {
        for i in 0..TRACKED.len() {
            if wanted.get(i).is_some() {
                self.share(i, wanted);
            }
        }
        self.1 = wanted.1.clone();
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

    fn extras(v: &[(&str, &str)]) -> ParamSet {
        let mut p = ParamSet::default();
        p.set_extras(
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        );
        p
    }

    #[test]
    fn extra_settings_are_set_reset_and_then_compared_by_pointer() {
        let mut server = ParamSet::default();
        let a = extras(&[("statement_timeout", "5s"), ("search_path", "app")]);
        assert_eq!(
            server.sync_sql(&a).unwrap(),
            "SET search_path TO 'app';SET statement_timeout TO '5s';"
        );
        server.adopt(&a);
        assert_eq!(server.sync_sql(&a), None);
        // Another client: what it lacks is reset, what differs set.
        let b = extras(&[("search_path", "other")]);
        assert_eq!(
            server.sync_sql(&b).unwrap(),
            "RESET statement_timeout;SET search_path TO 'other';"
        );
        server.adopt(&b);
        // A client without extras: back to the server's defaults.
        assert_eq!(
            server.sync_sql(&ParamSet::default()).unwrap(),
            "RESET search_path;"
        );
        server.adopt(&ParamSet::default());
        assert_eq!(server.sync_sql(&ParamSet::default()), None);
        // Equal sets held apart are shared after one comparison.
        let mut held = extras(&[("search_path", "other")]);
        assert_eq!(held.sync_sql(&b), None);
        assert!(Arc::ptr_eq(held.1.as_ref().unwrap(), b.1.as_ref().unwrap()));
        // DISCARD ALL forgets them.
        held.forget_unreported();
        assert_eq!(held.sync_sql(&b).unwrap(), "SET search_path TO 'other';");
    }

    #[test]
    fn the_last_of_a_name_wins_and_values_are_quoted() {
        let p = extras(&[
            ("search_path", "a"),
            ("work_mem", "1MB"),
            ("search_path", "b'c"),
        ]);
        assert_eq!(p.extra("SEARCH_PATH"), Some("b'c"));
        let mut server = ParamSet::default();
        assert_eq!(
            server.sync_sql(&p).unwrap(),
            "SET search_path TO 'b''c';SET work_mem TO '1MB';"
        );
    }
}
