//! `auth_hba_file`: who may connect from where, and how they authenticate,
//! in PostgreSQL's pg_hba.conf syntax (the subset a TCP pooler can honour).
//! The first line matching connection type, database, user and address
//! decides; no match refuses the connection, as PostgreSQL does.
//!
//! Lines: `host`, `hostssl`, `hostnossl` (TCP), `local` (pgwolf's Unix
//! socket, `unix_socket_dir`). Databases and users: names, quoted
//! names, comma lists, `all`; `sameuser` for databases. Addresses: CIDR,
//! address plus mask, `all`. Methods: trust, reject, scram-sha-256, md5,
//! password, cert, and peer on `local` lines. One option: `clientcert=verify-ca|verify-full` on a
//! `hostssl` line, which also demands a client certificate (verified
//! against `client_tls_ca_file`; verify-full: its CN is the user). Any
//! other option is an error, not ignored: a line that looks stricter than
//! it is would be worse than none. Anything else is an error naming the
//! line.

use crate::config::AuthType;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Local,
    Host,
    HostSsl,
    HostNoSsl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    All,
    SameUser,
    Is(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addr {
    All,
    Net { ip: IpAddr, prefix: u8 },
}

/// How a matching line lets the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One of the auth file's methods.
    Auth(AuthType),
    Reject,
    /// A client certificate; needs TLS.
    Cert,
}

/// A line's `clientcert` option: what the client's certificate must be
/// besides the method passing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientCert {
    #[default]
    Optional,
    /// A certificate the CA vouches for.
    VerifyCa,
    /// That, and its CN is the user.
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    line: usize,
    conn: Conn,
    databases: Vec<Name>,
    users: Vec<Name>,
    addr: Addr,
    method: Method,
    clientcert: ClientCert,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hba {
    rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum HbaError {
    #[error("cannot read auth_hba_file {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("auth_hba_file line {line}: {reason}")]
    Syntax { line: usize, reason: String },
}

/// What is known of a connection when the HBA file is consulted.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub db: &'a str,
    pub user: &'a str,
    /// The client's address; None for a Unix socket (`local` lines).
    pub ip: Option<IpAddr>,
    pub tls: bool,
}

impl Hba {
    pub fn load(path: &Path) -> Result<Hba, HbaError> {
        let text = std::fs::read_to_string(path).map_err(|error| HbaError::Io {
            path: path.to_owned(),
            error,
        })?;
        Hba::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Hba, HbaError> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let fields = split_fields(raw).map_err(|reason| HbaError::Syntax { line, reason })?;
            if fields.is_empty() {
                continue;
            }
            let rule =
                parse_rule(line, &fields).map_err(|reason| HbaError::Syntax { line, reason })?;
            rules.push(rule);
        }
        Ok(Hba { rules })
    }

    /// The method of the first line matching `a`, with its line number;
    /// None when no line matches.
    pub fn method(&self, a: Attempt<'_>) -> Option<(Method, usize)> {
        self.decide(a).map(|(m, line, _)| (m, line))
    }

    /// [`Hba::method`] and the line's `clientcert`.
    pub fn decide(&self, a: Attempt<'_>) -> Option<(Method, usize, ClientCert)> {
        self.rules
            .iter()
            .find(|r| r.matches(a))
            .map(|r| (r.method, r.line, r.clientcert))
    }
}

impl Rule {
    fn matches(&self, a: Attempt<'_>) -> bool {
        let conn = match (self.conn, a.ip) {
            (Conn::Local, ip) => ip.is_none(),
            (_, None) => false,
            (Conn::Host, _) => true,
            (Conn::HostSsl, _) => a.tls,
            (Conn::HostNoSsl, _) => !a.tls,
        };
        let db = self.databases.iter().any(|n| match n {
            Name::All => true,
            Name::SameUser => a.db == a.user,
            Name::Is(d) => d == a.db,
        });
        let user = self.users.iter().any(|n| match n {
            Name::All => true,
            Name::SameUser => false,
            Name::Is(u) => u == a.user,
        });
        conn && db && user && a.ip.is_none_or(|ip| self.addr.contains(ip))
    }
}

impl Addr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Addr::All, _) => true,
            (
                Addr::Net {
                    ip: IpAddr::V4(net),
                    prefix,
                },
                IpAddr::V4(ip),
            ) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (
                Addr::Net {
                    ip: IpAddr::V6(net),
                    prefix,
                },
                IpAddr::V6(ip),
            ) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// One field: its text and whether any of it was quoted (a quoted `all`
/// is a name, not the keyword).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    items: Vec<(String, bool)>,
}

/// Splits a line into whitespace-separated fields, each a comma list of
/// possibly quoted items; `#` outside quotes starts a comment.
fn split_fields(line: &str) -> Result<Vec<Field>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => return Ok(fields),
            _ => {}
        }
        let mut items = Vec::new();
        let (mut item, mut quoted, mut in_quotes) = (String::new(), false, false);
        while let Some(&c) = chars.peek() {
            if !in_quotes && (c.is_whitespace() || c == '#') {
                break;
            }
            chars.next();
            match c {
                '"' if in_quotes && chars.peek() == Some(&'"') => {
                    chars.next();
                    item.push('"');
                }
                '"' => {
                    in_quotes = !in_quotes;
                    quoted = true;
                }
                ',' if !in_quotes => {
                    items.push((std::mem::take(&mut item), quoted));
                    quoted = false;
                }
                c => item.push(c),
            }
        }
        if in_quotes {
            return Err("unterminated quoted name".into());
        }
        items.push((item, quoted));
        if items.iter().any(|(s, q)| s.is_empty() && !q) {
            return Err("empty item in a comma list".into());
        }
        fields.push(Field { items });
    }
}

fn single(f: &Field, what: &str) -> Result<String, String> {
    match f.items.as_slice() {
        [(s, _)] => Ok(s.clone()),
        _ => Err(format!("{what} takes one value, not a list")),
    }
}

fn parse_rule(line: usize, fields: &[Field]) -> Result<Rule, String> {
    let kind = single(&fields[0], "the connection type")?;
    let conn = match kind.as_str() {
        "local" => Conn::Local,
        "host" => Conn::Host,
        "hostssl" => Conn::HostSsl,
        "hostnossl" => Conn::HostNoSsl,
        "hostgssenc" | "hostnogssenc" => {
            return Err(format!("`{kind}`: GSSAPI encryption is not supported"))
        }
        other => {
            return Err(format!(
                "unknown connection type `{other}` (host, hostssl, hostnossl, local)"
            ))
        }
    };
    let need = if conn == Conn::Local { 4 } else { 5 };
    if fields.len() < need {
        let address = if conn == Conn::Local { "" } else { ", address" };
        return Err(format!(
            "too few fields: `{kind}` needs database, user{address}, method"
        ));
    }
    let databases = names(&fields[1], true)?;
    let users = names(&fields[2], false)?;
    let (addr, rest) = if conn == Conn::Local {
        (Addr::All, &fields[3..])
    } else {
        address(&fields[3..])?
    };
    let method_name = single(
        rest.first().ok_or("missing the authentication method")?,
        "the method",
    )?;
    let method = match method_name.as_str() {
        "trust" => Method::Auth(AuthType::Trust),
        "reject" => Method::Reject,
        "scram-sha-256" => Method::Auth(AuthType::ScramSha256),
        "md5" => Method::Auth(AuthType::Md5),
        "password" => Method::Auth(AuthType::Plain),
        "cert" => Method::Cert,
        // As PostgreSQL: the kernel names the peer only on a socket.
        "peer" if conn != Conn::Local => {
            return Err("peer authentication is only supported on local sockets".into())
        }
        "peer" => Method::Auth(AuthType::Peer),
        other => {
            return Err(format!(
            "method `{other}` is not supported (trust, reject, scram-sha-256, md5, password, cert, peer)"
        ))
        }
    };
    let mut clientcert = ClientCert::Optional;
    for opt in &rest[1..] {
        let text = single(opt, "an option")?;
        let Some((name, value)) = text.split_once('=') else {
            return Err(format!("`{text}`: options after the method are name=value"));
        };
        if name != "clientcert" {
            return Err(format!(
                "option `{name}` is not supported (only clientcert=verify-ca|verify-full)"
            ));
        }
        if conn != Conn::HostSsl {
            return Err("clientcert can only be set on hostssl lines".into());
        }
        clientcert = match value {
            "verify-full" => ClientCert::VerifyFull,
            "verify-ca" if method == Method::Cert => {
                return Err("clientcert only accepts verify-full with the cert method".into())
            }
            "verify-ca" => ClientCert::VerifyCa,
            other => {
                return Err(format!(
                    "clientcert=`{other}`: only verify-ca and verify-full"
                ))
            }
        };
    }
    Ok(Rule {
        line,
        conn,
        databases,
        users,
        addr,
        method,
        clientcert,
    })
}

fn names(f: &Field, database: bool) -> Result<Vec<Name>, String> {
    f.items
        .iter()
        .map(|(s, quoted)| match (s.as_str(), quoted) {
            (_, true) => Ok(Name::Is(s.clone())),
            ("all", _) => Ok(Name::All),
            ("sameuser", _) if database => Ok(Name::SameUser),
            ("samerole" | "samegroup" | "replication", _) if database => Err(format!(
                "database `{s}` is not supported (names, all, sameuser)"
            )),
            (s, _) if s.starts_with('@') => Err(format!("`{s}`: @file inclusion is not supported")),
            (s, _) if s.starts_with('+') => Err(format!(
                "`{s}`: group membership (+role) is not supported; list the users"
            )),
            (s, _) if s.starts_with('/') => {
                Err(format!("`{s}`: regular expressions are not supported"))
            }
            (s, _) => Ok(Name::Is(s.to_string())),
        })
        .collect()
}

/// The address field (`all`, CIDR, or address and mask); returns the
/// fields after it.
fn address(fields: &[Field]) -> Result<(Addr, &[Field]), String> {
    let text = single(&fields[0], "the address")?;
    match text.as_str() {
        "all" => return Ok((Addr::All, &fields[1..])),
        "samehost" | "samenet" => return Err(format!("address `{text}` is not supported")),
        _ => {}
    }
    if let Some((ip, prefix)) = text.split_once('/') {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address with a /prefix"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`{text}`: the prefix must be 0 to {max}"))?;
        return Ok((Addr::Net { ip, prefix }, &fields[1..]));
    }
    let ip: IpAddr = text.parse().map_err(|_| {
        format!("`{text}` is not an address (CIDR, address and mask, or all; host names are not supported)")
    })?;
    let mask_text = fields
        .get(1)
        .map(|f| single(f, "the mask"))
        .transpose()?
        .ok_or_else(|| format!("`{text}` needs a /prefix or a mask field"))?;
    let mask: IpAddr = mask_text
        .parse()
        .map_err(|_| format!("`{mask_text}` is not a mask"))?;
    let prefix = match (ip, mask) {
        (IpAddr::V4(_), IpAddr::V4(m)) => prefix_of(u128::from(u32::from(m)) << 96),
        (IpAddr::V6(_), IpAddr::V6(m)) => prefix_of(u128::from(m)),
        _ => None,
    }
    .ok_or_else(|| format!("`{mask_text}` is not a mask for `{text}`"))?;
    Ok((Addr::Net { ip, prefix }, &fields[2..]))
}

/// Leading one bits of a contiguous mask (left-aligned in 128 bits).
fn prefix_of(mask: u128) -> Option<u8> {
    let ones = mask.leading_ones();
    (mask.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(db: &'static str, user: &'static str, ip: &str) -> Attempt<'static> {
        Attempt {
            db,
            user,
            ip: Some(ip.parse().unwrap()),
            tls: false,
        }
    }

    fn err(text: &str) -> String {
        Hba::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn local_lines_match_only_the_socket() {
        let hba =
            Hba::parse("local app all peer\nlocal all all scram-sha-256\nhost all all all trust\n")
                .unwrap();
        let unix = |db| Attempt {
            ip: None,
            ..at(db, "u", "127.0.0.1")
        };
        let m = |a| hba.method(a);
        assert_eq!(m(unix("app")), Some((Method::Auth(AuthType::Peer), 1)));
        assert_eq!(m(unix("x")), Some((Method::Auth(AuthType::ScramSha256), 2)));
        let tcp = at("app", "u", "127.0.0.1");
        assert_eq!(m(tcp), Some((Method::Auth(AuthType::Trust), 3)));
        assert!(err("host all all all peer\n").contains("only supported on local sockets"));
    }

    #[test]
    fn first_matching_line_decides() {
        let hba = Hba::parse(
            "# comment\n\
             \n\
             local all all trust\n\
             host  appdb  app   127.0.0.1/32   scram-sha-256\n\
             host  all    bad   all            reject   # trailing comment\n\
             hostnossl \"all\",other  all 10.0.0.0 255.0.0.0 md5\n\
             hostssl all all ::1/128 cert clientcert=verify-full\n\
             host sameuser all 192.168.0.0/16 password\n",
        )
        .unwrap();
        let m = |a| hba.method(a);
        assert_eq!(
            m(at("appdb", "app", "127.0.0.1")),
            Some((Method::Auth(AuthType::ScramSha256), 4))
        );
        assert_eq!(m(at("appdb", "app", "127.0.0.2")), None);
        assert_eq!(m(at("x", "bad", "8.8.8.8")), Some((Method::Reject, 5)));
        // A quoted "all" is the database named all.
        assert_eq!(
            m(at("all", "u", "10.1.2.3")),
            Some((Method::Auth(AuthType::Md5), 6))
        );
        assert_eq!(
            m(at("other", "u", "10.1.2.3")),
            Some((Method::Auth(AuthType::Md5), 6))
        );
        assert_eq!(m(at("appdb", "u", "10.1.2.3")), None);
        // hostssl needs TLS; hostnossl refuses it.
        assert_eq!(m(at("a", "u", "::1")), None);
        let tls = Attempt {
            tls: true,
            ..at("a", "u", "::1")
        };
        assert_eq!(m(tls), Some((Method::Cert, 7)));
        assert_eq!(
            m(Attempt {
                tls: true,
                ..at("other", "u", "10.0.0.1")
            }),
            None
        );
        assert_eq!(
            m(at("bob", "bob", "192.168.1.1")),
            Some((Method::Auth(AuthType::Plain), 8))
        );
        assert_eq!(m(at("alice", "bob", "192.168.1.1")), None);
    }

    #[test]
    fn prefixes_and_masks() {
        let hba = Hba::parse("host all all 0.0.0.0/0 trust\n").unwrap();
        assert!(hba.method(at("d", "u", "203.0.113.9")).is_some());
        assert!(
            hba.method(at("d", "u", "::1")).is_none(),
            "v4 rule, v6 peer"
        );
        let hba = Hba::parse("host all all fe80::/10 trust\n").unwrap();
        assert!(hba.method(at("d", "u", "fe80::1")).is_some());
        assert!(hba.method(at("d", "u", "fec0::1")).is_none());
        let hba = Hba::parse("host all all 172.16.0.0 255.240.0.0 trust\n").unwrap();
        assert!(hba.method(at("d", "u", "172.31.255.255")).is_some());
        assert!(hba.method(at("d", "u", "172.32.0.0")).is_none());
    }

    #[test]
    fn clientcert_is_kept_with_the_line() {
        let hba = Hba::parse(
            "hostssl a all all scram-sha-256 clientcert=verify-ca\n\
             hostssl b all all md5 clientcert=verify-full\n\
             hostssl all all all scram-sha-256\n",
        )
        .unwrap();
        let tls = |db| Attempt {
            tls: true,
            ..at(db, "u", "10.0.0.1")
        };
        let cc = |db| hba.decide(tls(db)).map(|(_, _, c)| c);
        assert_eq!(cc("a"), Some(ClientCert::VerifyCa));
        assert_eq!(cc("b"), Some(ClientCert::VerifyFull));
        assert_eq!(cc("c"), Some(ClientCert::Optional));
    }

    #[test]
    fn bad_lines_name_the_line_and_the_problem() {
        let cases = [
            (
                "host all all 127.0.0.1/32 ident\n",
                "line 1: method `ident` is not supported",
            ),
            ("\nhost all all\n", "line 2: too few fields"),
            ("hots all all all trust\n", "unknown connection type `hots`"),
            (
                "host all all 127.0.0.1/33 trust\n",
                "the prefix must be 0 to 32",
            ),
            ("host all all 127.0.0.1 trust\n", "is not a mask"),
            (
                "host all all 127.0.0.1 255.0.255.0 trust\n",
                "is not a mask for",
            ),
            (
                "host all all db.example.com trust\n",
                "host names are not supported",
            ),
            ("host all +admins all trust\n", "group membership"),
            ("host @dbs all all trust\n", "@file inclusion"),
            ("host all \"app all all trust\n", "unterminated quoted name"),
            ("host a,,b all all trust\n", "empty item"),
            (
                "host all all all trust extra\n",
                "options after the method are name=value",
            ),
            ("host all all samenet trust\n", "`samenet` is not supported"),
            (
                "hostssl all all all md5 map=users\n",
                "option `map` is not supported",
            ),
            (
                "host all all all md5 clientcert=verify-ca\n",
                "only be set on hostssl lines",
            ),
            (
                "hostssl all all all cert clientcert=verify-ca\n",
                "only accepts verify-full with the cert method",
            ),
            (
                "hostssl all all all md5 clientcert=1\n",
                "only verify-ca and verify-full",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.contains(want), "{text:?}: {got}");
        }
    }
}
