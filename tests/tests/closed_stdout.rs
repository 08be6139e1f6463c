//! A verb whose reader goes away early (`sipguard check | head -1`) ends
//! the way cat or ls end there: quietly, by SIGPIPE, without a panic
//! message or a partial error on stderr.

use std::{
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use sipguard_tests::sipguard_bin;

#[test]
fn check_into_a_closed_pipe_ends_quietly() {
    let config =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/valid/readme-example.yaml");
    // A pipe nobody reads any more: the first write fails at once, so the
    // outcome does not depend on how much fits in the pipe's buffer.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(sipguard_bin())
        .arg("check")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("running sipguard check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "sipguard check into a closed pipe: {}, stderr: {stderr}",
        out.status
    );
    assert_eq!(stderr, "", "nothing on stderr");
}
