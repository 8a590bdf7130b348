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
fn the_application_examples_validate_against_the_kubernetes_schemas() {
    let files = support::app_examples();
    let documents: usize = files
        .iter()
        .map(|f| support::documents(&std::fs::read_to_string(f).unwrap()).len())
        .sum();
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

/// `kubectl kustomize DIR`: the rendered YAML. kubectl comes from Debian's
/// kubernetes-client (scripts/install-deps) when none is installed.
fn kustomize(dir: &str) -> String {
    let path = support::repo_root().join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&path)
        .output()
        .expect(
            "kubectl must be on PATH (scripts/install-deps installs Debian's kubernetes-client)",
        );
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_deploy_kustomizations_render_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    for (kustomization, replicas) in [("deploy/controller", 1), ("deploy/overlays/ha", 2)] {
        let rendered = kustomize(kustomization);
        for kind in [
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
        ] {
            assert!(
                rendered.lines().any(|l| l == format!("kind: {kind}")),
                "{kustomization} renders no {kind}"
            );
        }
        assert!(
            rendered.contains(&format!("  replicas: {replicas}\n")),
            "{kustomization}: {replicas} replicas"
        );
        let path = dir.path().join(kustomization.replace('/', "-") + ".yaml");
        std::fs::write(&path, &rendered).unwrap();
        let report = validate(&[path]);
        assert_eq!(
            report.matches("INFO").count(),
            rendered.lines().filter(|l| l.starts_with("kind: ")).count(),
            "one INFO line per object:\n{report}"
        );
    }
}
