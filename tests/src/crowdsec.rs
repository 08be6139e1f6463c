//! A real CrowdSec Local API for tests: Debian's `crowdsec` 1.4.x run with
//! `-no-cs` (the API only, no log acquisition), with its own config, hub,
//! SQLite database and logs in a temporary directory, no Central API
//! (the config has no `online_client`), listening on one address the test
//! chooses (loopback or inside a namespace it created). Started, stopped
//! and killed by its PID; `cscli` works on the same config.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

pub struct LocalApi {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// Network namespace (`ip netns` name) the API runs in, if any.
    netns: Option<String>,
    child: Option<Child>,
}

/// A free TCP port on loopback (for an API on 127.0.0.1).
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

impl LocalApi {
    /// Writes the config under a fresh temporary directory and starts the API.
    pub fn start(listen: SocketAddr, netns: Option<&str>) -> Result<LocalApi> {
        if Command::new("crowdsec").arg("-version").output().is_err() {
            bail!("the crowdsec binary is missing: run ./scripts/setup.sh --tests (Debian package crowdsec)");
        }
        let dir = std::env::temp_dir().join(format!(
            "sipguard-lapi-{}-{}",
            std::process::id(),
            listen.port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["etc", "data", "hub", "log"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let t = dir.display();
        let config = format!(
            "common:
  daemonize: false
  log_media: file
  log_dir: {t}/log/
  log_level: info
  working_dir: {t}
config_paths:
  config_dir: {t}/etc/
  data_dir: {t}/data/
  simulation_path: {t}/etc/simulation.yaml
  hub_dir: {t}/hub/
  index_path: {t}/hub/.index.json
  notification_dir: {t}/etc/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
db_config:
  type: sqlite
  db_path: {t}/data/crowdsec.db
  use_wal: true
  log_level: warning
  flush:
    max_items: 500000
    max_age: 7d
api:
  client:
    credentials_path: {t}/etc/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: {listen}
    profiles_path: {t}/etc/profiles.yaml
    console_path: {t}/etc/console.yaml
    trusted_ips: [\"127.0.0.1\", \"::1\"]
prometheus:
  enabled: false
"
        );
        std::fs::write(dir.join("etc/config.yaml"), config)?;
        std::fs::write(
            dir.join("etc/profiles.yaml"),
            "name: default_ip_remediation\nfilters:\n - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\ndecisions:\n - type: ban\n   duration: 4h\non_success: break\n",
        )?;
        std::fs::write(dir.join("etc/simulation.yaml"), "simulation: false\n")?;
        let mut api = LocalApi {
            dir,
            listen,
            netns: netns.map(str::to_string),
            child: None,
        };
        api.run()?;
        // cscli's decisions commands talk to the API as a machine.
        let creds = api.dir.join("etc/local_api_credentials.yaml");
        api.cscli(&[
            "machines",
            "add",
            "sipguard-tests-cscli",
            "--password",
            "cscli-password",
            "-f",
            &creds.display().to_string(),
        ])?;
        // `machines add -f` writes the URL it was told; make it this API's.
        std::fs::write(
            &creds,
            format!(
                "url: {}\nlogin: sipguard-tests-cscli\npassword: cscli-password\n",
                api.url()
            ),
        )?;
        Ok(api)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    fn command(&self, program: &str) -> Command {
        match &self.netns {
            // Only the network namespace: the API needs no /sys of its own.
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Starts the API (again, after [`stop`](Self::stop)) and waits until it
    /// accepts connections.
    pub fn run(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::File::create(self.dir.join("log/stdout.log"))?;
        let child = self
            .command("crowdsec")
            .arg("-c")
            .arg(self.dir.join("etc/config.yaml"))
            .arg("-no-cs")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting crowdsec -no-cs")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.reachable() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    self.child = None;
                    bail!("crowdsec exited ({st}) before listening:\n{}", self.logs());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "crowdsec is not listening on {} after 30 s:\n{}",
                    self.listen,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn reachable(&self) -> bool {
        match &self.netns {
            None => std::net::TcpStream::connect_timeout(&self.listen, Duration::from_millis(200))
                .is_ok(),
            Some(_) => self
                .command("bash")
                .arg("-c")
                .arg(format!(
                    "exec 3<>/dev/tcp/{}/{}",
                    self.listen.ip(),
                    self.listen.port()
                ))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    /// Stops the API (SIGTERM to its PID, SIGKILL after 10 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the PID of a child this struct started and has
        // not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["log/stdout.log", "log/crowdsec_api.log", "log/crowdsec.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(f)) {
                let tail: Vec<&str> = t.lines().rev().take(15).collect();
                s.push_str(&format!("--- {f}\n"));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    /// Runs `cscli` on this API's config; its stdout.
    pub fn cscli(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command("cscli")
            .arg("-c")
            .arg(self.dir.join("etc/config.yaml"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running cscli")?;
        if !out.status.success() {
            bail!(
                "cscli {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `cscli bouncers add NAME`: the key, written to a 0600 file in the
    /// API's directory (returned with the key).
    pub fn add_bouncer(&self, name: &str) -> Result<(String, PathBuf)> {
        let key = self.cscli(&["bouncers", "add", name, "-o", "raw"])?;
        let key = key.trim().to_string();
        let path = self.dir.join(format!("{name}.key"));
        write_secret(&path, &key)?;
        Ok((key, path))
    }

    /// `cscli machines add ID --password PW`; the password file (0600).
    pub fn add_machine(&self, id: &str, password: &str) -> Result<PathBuf> {
        let scratch = self.dir.join(format!("{id}.credentials.yaml"));
        self.cscli(&[
            "machines",
            "add",
            id,
            "--password",
            password,
            "-f",
            &scratch.display().to_string(),
        ])?;
        let path = self.dir.join(format!("{id}.password"));
        write_secret(&path, password)?;
        Ok(path)
    }

    /// `cscli decisions add` for an address or a range (`/` in `target`).
    pub fn add_decision(&self, target: &str, duration: &str, kind: &str) -> Result<()> {
        let flag = if target.contains('/') {
            "--range"
        } else {
            "--ip"
        };
        self.cscli(&[
            "decisions",
            "add",
            flag,
            target,
            "--duration",
            duration,
            "--type",
            kind,
        ])
        .map(|_| ())
    }

    pub fn delete_decision(&self, target: &str) -> Result<()> {
        let flag = if target.contains('/') {
            "--range"
        } else {
            "--ip"
        };
        self.cscli(&["decisions", "delete", flag, target])
            .map(|_| ())
    }

    /// `cscli decisions list -o json` (alerts with their decisions).
    pub fn decisions_json(&self) -> Result<serde_json::Value> {
        let out = self.cscli(&["decisions", "list", "-o", "json"])?;
        serde_json::from_str(out.trim()).context("cscli decisions list -o json is not JSON")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn write_secret(path: &Path, secret: &str) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, format!("{secret}\n").as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
