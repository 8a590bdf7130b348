//! Every object `render` emits for every example, and the CRD itself,
//! validate against the Kubernetes 1.33 OpenAPI schemas, with the
//! `kubernetes-validate` Python package (it carries the schemas, so this
//! runs offline; scripts/install-deps installs it). A missing package fails
//! the test: a skipped validation would pass silently.

mod support;

use std::process::Command;

const KUBERNETES_VERSION: &str = "1.33.0";

fn validate(files: &[std::path::PathBuf]) -> String {
    let probe = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .output()
        .expect("python3 must be on PATH for the OpenAPI validation test");
    assert!(
        probe.status.success(),
        "the kubernetes-validate Python package is missing; install it with \
         scripts/install-deps (or: python3 -m pip install kubernetes-validate)\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let out = Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "-k",
            KUBERNETES_VERSION,
        ])
        .args(files)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}"
    );
    // A kind without a schema is only a warning there; here every object
    // must have been checked.
    assert!(
        !report.contains("WARN"),
        "kubernetes-validate warned:\n{report}"
    );
    report
}

#[test]
fn rendered_examples_validate_against_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut documents = 0;
    for example in support::examples() {
        let rendered = support::render_example(&example);
        documents += rendered.matches("\napiVersion:").count() + 1;
        let path = dir.path().join(example.file_name().unwrap());
        std::fs::write(&path, rendered).unwrap();
        files.push(path);
    }
    let report = validate(&files);
    assert_eq!(
        report.matches("INFO").count(),
        documents,
        "one INFO line per validated object expected:\n{report}"
    );
}

#[test]
fn the_crd_validates_against_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crd.yaml");
    std::fs::write(&path, pgwolf_controller::api::crd_yaml().unwrap()).unwrap();
    let report = validate(&[path]);
    assert!(report.contains("customresourcedefinition"), "{report}");
}
