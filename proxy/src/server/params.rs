//! The session parameters the proxy keeps equal between a client and the
//! server connection it is lent, so pooled clients never see each other's.

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

/// One value (or "server default") per tracked parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSet([Option<Box<str>>; TRACKED.len()]);

impl ParamSet {
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0[i].as_deref()
    }

    pub fn set(&mut self, i: usize, value: Option<&str>) {
        if self.0[i].as_deref() != value {
            self.0[i] = value.map(Into::into);
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
    pub fn sync_sql(&self, wanted: &ParamSet) -> Option<String> {
        let mut sql = String::new();
        for (i, name) in TRACKED.iter().enumerate() {
            let (have, want) = (self.get(i), wanted.get(i));
            if have == want {
                continue;
            }
            match want {
                Some(v) => {
                    sql.push_str("SET ");
                    sql.push_str(name);
                    sql.push_str(" TO ");
                    sql.push_str(&crate::protocol::frontend::quote_literal(v));
                }
                // Nothing known wanted and something set: back to default.
                None if have.is_some() => {
                    sql.push_str("RESET ");
                    sql.push_str(name);
                }
                None => continue,
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
            if let Some(v) = wanted.get(i) {
                self.set(i, Some(v));
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
    fn unknown_wanted_resets() {
        let mut have = ParamSet::default();
        have.observe("extra_float_digits", "3");
        assert_eq!(
            have.sync_sql(&ParamSet::default()).unwrap(),
            "RESET extra_float_digits;"
        );
    }
}
