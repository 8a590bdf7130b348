//! The startup packet's `options` parameter, as PostgreSQL reads it
//! (`pg_split_opts`, then the command-line switches): arguments separated
//! by white space, a backslash taking the next character literally; each
//! setting is `-c name=value`, `-cname=value` or `--name=value` (a `-` in
//! such a name is a `_`). libpq's `options` connection parameter and
//! `PGOPTIONS` arrive here. Other switches (`-B 100`, ...) set what only a
//! new server process can, which a pooled connection cannot honour.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("invalid command-line argument in \"options\": {0}")]
    Switch(String),
    #[error("-c {0} in \"options\": a setting is name=value")]
    NoValue(String),
}

/// The settings in `options`, in order, names lower-cased (GUC names are
/// case-insensitive).
pub fn settings(options: &str) -> Result<Vec<(String, String)>, OptionsError> {
    let args = split(options);
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let setting = if let Some(long) = arg.strip_prefix("--") {
            long.to_string()
        } else if arg == "-c" {
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| OptionsError::NoValue(String::new()))?
        } else if let Some(rest) = arg.strip_prefix("-c") {
            rest.to_string()
        } else {
            return Err(OptionsError::Switch(arg.clone()));
        };
        let Some((name, value)) = setting.split_once('=') else {
            return Err(OptionsError::NoValue(setting));
        };
        if name.is_empty() {
            return Err(OptionsError::NoValue(setting));
        }
        out.push((
            name.replace('-', "_").to_ascii_lowercase(),
            value.to_string(),
        ));
        i += 1;
    }
    Ok(out)
}

/// White space separates; `\` makes the next character part of the
/// argument, white space or backslash included.
fn split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c.is_ascii_whitespace() {
            if in_arg {
                out.push(std::mem::take(&mut cur));
                in_arg = false;
            }
            continue;
        }
        in_arg = true;
        if c == '\\' {
            if let Some(next) = chars.next() {
                cur.push(next);
            }
        } else {
            cur.push(c);
        }
    }
    if in_arg {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn every_spelling_of_a_setting() {
        assert_eq!(
            settings("-c statement_timeout=5s -cwork_mem=8MB --search-path=app,public").unwrap(),
            pairs(&[
                ("statement_timeout", "5s"),
                ("work_mem", "8MB"),
                ("search_path", "app,public")
            ])
        );
        assert_eq!(
            settings("  -c  TimeZone=UTC  ").unwrap(),
            pairs(&[("timezone", "UTC")])
        );
        assert_eq!(settings("").unwrap(), vec![]);
    }

    #[test]
    fn a_backslash_keeps_white_space_in_a_value() {
        assert_eq!(
            settings(r"-c application_name=my\ app -c x.y=a\\b").unwrap(),
            pairs(&[("application_name", "my app"), ("x.y", r"a\b")])
        );
    }

    #[test]
    fn other_switches_and_settings_without_a_value_are_refused() {
        assert_eq!(settings("-B 100"), Err(OptionsError::Switch("-B".into())));
        assert!(matches!(settings("-c"), Err(OptionsError::NoValue(_))));
        assert!(matches!(
            settings("-c work_mem"),
            Err(OptionsError::NoValue(_))
        ));
        assert!(matches!(settings("--=1"), Err(OptionsError::NoValue(_))));
    }
}
