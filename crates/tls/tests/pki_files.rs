//! The CA and server certificate on disk: keys are 0600 from their creation on, and what
//! is saved loads back.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use ferry_tls::pki::{
    CA_CERT_FILE, CA_KEY_FILE, Ca, SERVER_CERT_FILE, SERVER_KEY_FILE, ServerCert,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn keys_are_private_and_everything_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("ferry test CA").unwrap();
    ca.save(dir.path()).unwrap();
    let cert = ca.issue_server_cert(&["127.0.0.1", "localhost"]).unwrap();
    cert.save(dir.path()).unwrap();

    assert_eq!(mode(&dir.path().join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.path().join(SERVER_KEY_FILE)), 0o600);
    // Certificates are public: others may read them (the umask may take write bits away).
    assert_eq!(mode(&dir.path().join(CA_CERT_FILE)) & 0o444, 0o444);
    assert_eq!(mode(&dir.path().join(SERVER_CERT_FILE)) & 0o444, 0o444);

    let loaded = Ca::load(dir.path()).unwrap();
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    let loaded_cert = ServerCert::load(dir.path()).unwrap();
    assert_eq!(loaded_cert.cert_pem, cert.cert_pem);
    assert!(ferry_tls::server_config(&loaded_cert.cert_pem, &loaded_cert.key_pem).is_ok());

    // Nothing but the four files: no temporary file is left behind.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected = [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE];
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn a_missing_directory_is_a_pki_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("ferry test CA").unwrap();
    let error = ca.save(&dir.path().join("missing")).unwrap_err();
    assert!(
        matches!(error, ferry_tls::pki::PkiError::Io { .. }),
        "{error}"
    );
}
