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
        let rendered = support::render_example(&example);
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
