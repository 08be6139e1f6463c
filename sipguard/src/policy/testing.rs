//! What the policy unit tests share.

use std::path::PathBuf;

/// A file with the given contents in a directory of its own under the
/// temporary directory (named after `tag` and this process), removed with
/// that directory on drop.
pub struct TestFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl TestFile {
    pub fn new(tag: &str, name: &str, contents: &str) -> TestFile {
        let dir = std::env::temp_dir().join(format!("sipguard-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        TestFile { dir, path }
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
