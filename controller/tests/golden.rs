//! Golden files: every object each example manifest renders to, compared
//! with controller/tests/golden/<example>.yaml. Review a change there like
//! code: it is what the controller will apply.

mod support;

use std::path::Path;

#[test]
fn examples_render_as_their_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut stale = Vec::new();
    for example in support::examples() {
        let rendered = without_key_material(&support::render_example(&example));
        let golden = dir.join(example.file_name().unwrap());
        if update {
            std::fs::write(&golden, &rendered).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != rendered {
            stale.push(golden.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "rendered objects differ from {stale:?}; if the change is intended, regenerate with\n  \
         UPDATE_GOLDEN=1 cargo nextest run -p pgwolf-controller --test golden\n\
         and review the diff"
    );
}

/// The issued certificates and keys come from the OS's randomness, and an
/// ECDSA signature differs on every run: their values are left out of the
/// comparison (secrets/tls.rs's tests check what they are); their keys and
/// the Secrets around them are compared.
fn without_key_material(yaml: &str) -> String {
    const KEYS: [&str; 4] = ["tls.crt", "tls.key", "ca.crt", "ca.key"];
    let mut out = String::new();
    let mut skip_deeper_than: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(depth) = skip_deeper_than {
            if indent > depth {
                continue;
            }
            skip_deeper_than = None;
        }
        let key = line.trim_start().split(": ").next().unwrap_or_default();
        if KEYS.contains(&key) && line.trim_start().len() > key.len() {
            out.push_str(&format!("{}{key}: <issued per cluster>\n", &line[..indent]));
            skip_deeper_than = Some(indent);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
