//! deploy/crd/postgresclusters.yaml is generated; this fails when it no
//! longer matches the types.

use std::path::Path;

#[test]
fn committed_crd_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crd/postgresclusters.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = pgwolf_controller::api::crd_yaml().unwrap();
    assert!(
        committed == generated,
        "{} is out of date with controller/src/api; regenerate it with\n  \
         cargo run -p pgwolf-controller -- crd > deploy/crd/postgresclusters.yaml",
        path.display()
    );
}
