//! The proxy's modules form layers, each using only those below it: a
//! change low in the stack (the wire protocol, the pool) cannot depend on
//! how the console or the listener happen to work, and no two modules need
//! each other. This reads every source file and fails on a `crate::` path
//! that points up.

use std::path::{Path, PathBuf};

/// Bottom first: each module may use those before it, none after it.
const LAYERS: &[&str] = &[
    // Sans-I/O: bytes in, bytes out.
    "protocol", "prepared",
    // What the user asked for, and the socket options it implies.
    "config", "sockopt", "net", // Where secrets come from, and TLS.
    "auth", "tls", // One server connection; the members of a cluster; pools of them.
    "server", "topology", "pool",
    // Every connected client (cancel, kill, SHOW CLIENTS), then the state
    // every task shares.
    "registry", "app",
    // One client's session; what acts on sessions and pools from outside.
    "client", "control", "http", "admin",
    // Accepting connections, and the process's start and end.
    "listener", "shutdown",
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|m| *m == module)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a line of code names through `crate::` (in a
/// path or a `use crate::{a, b}` group); comments are not code.
fn named(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or_default();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let ident = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            found.extend(inner.split(',').map(|p| ident(p.trim())));
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 50, "read {} files from {src:?}", files.len());
    let mut upward = Vec::new();
    let mut unknown = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str();
        let top = top.to_string_lossy();
        let module = top.trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(from) = rank(module) else {
            unknown.push(module.to_string());
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for to in named(line) {
                if to == module {
                    continue;
                }
                match rank(&to) {
                    Some(r) if r < from => {}
                    Some(_) => upward.push(format!(
                        "{}:{}: {module} uses {to}: {}",
                        rel.display(),
                        n + 1,
                        line.trim()
                    )),
                    None => unknown.push(to),
                }
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS: {unknown:?}"
    );
    assert!(
        upward.is_empty(),
        "imports that point up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_reader_sees_paths_and_groups() {
    assert_eq!(named("use crate::pool::Pool;"), ["pool"]);
    assert_eq!(
        named("use crate::{config, pool::Pool};"),
        ["config", "pool"]
    );
    assert!(named("// see crate::admin").is_empty());
    assert_eq!(
        named("let x = crate::tls::Stream::Plain(s); // crate::admin"),
        ["tls"]
    );
}
