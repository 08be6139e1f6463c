//! Drop events in userspace: decoding the ring buffer records, rendering
//! them (text or JSON lines), and serving them on a unix socket that only
//! root can open, for `sipguard events`.

use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{MapData, RingBuf};
use serde::{Deserialize, Serialize};
use sipguard_common::{abi::*, Reason};
use tokio::{io::unix::AsyncFd, io::AsyncWriteExt as _, net::UnixListener, sync::broadcast};

use crate::{
    kernel::{attach::ifname, stateful::boot_to_unix_ns},
    policy::{config::EventLog, evaluate::ip_from},
};

/// One event as logged and sent to clients (also the JSON schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    pub time_unix_ns: u64,
    pub interface: String,
    pub ifindex: u32,
    pub src: String,
    pub dst: String,
    pub sport: u16,
    pub dport: u16,
    /// `udp`, `tcp`, or `fragment` (later fragment: no L4 header).
    pub protocol: String,
    pub reason: String,
    /// `drop` or `would_drop` (monitor mode).
    pub action: String,
    /// Events of this source suppressed by sampling since its last event.
    pub suppressed: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_agent: Option<String>,
}

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Option<DropEvent> {
    if bytes.len() < core::mem::size_of::<DropEvent>() {
        return None;
    }
    // SAFETY: DropEvent is plain #[repr(C)] data; every bit pattern is valid;
    // the length was checked; read_unaligned has no alignment needs.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const DropEvent) })
}

impl Event {
    pub fn from_raw(e: &DropEvent) -> Event {
        Self::from_raw_with(e, &mut |i| {
            ifname(i).unwrap_or_else(|| format!("ifindex {i}"))
        })
    }

    /// Like `from_raw` with a caller-supplied interface name lookup (the
    /// daemon caches names: one syscall per event is too many in a flood).
    pub fn from_raw_with(e: &DropEvent, name: &mut dyn FnMut(u32) -> String) -> Event {
        let unix = boot_to_unix_ns(e.time_ns);
        let reason = Reason::from_u32(e.reason)
            .map(|r| r.name().to_string())
            .unwrap_or_else(|| format!("reason_{}", e.reason));
        let ua_len = (e.ua_len as usize).min(EVENT_UA_LEN);
        Event {
            time: rfc3339(unix),
            time_unix_ns: unix,
            interface: name(e.ifindex),
            ifindex: e.ifindex,
            src: ip_from(e.family == 6, e.src).to_string(),
            dst: ip_from(e.family == 6, e.dst).to_string(),
            sport: e.sport,
            dport: e.dport,
            protocol: match e.proto {
                6 => "tcp".into(),
                17 => "udp".into(),
                0 => "fragment".into(),
                p => format!("ip{p}"),
            },
            reason,
            action: if e.action == ACTION_WOULD_DROP {
                "would_drop"
            } else {
                "drop"
            }
            .into(),
            suppressed: e.suppressed,
            method: (e.sip_method != sip_method::UNKNOWN)
                .then(|| sip_method::name(e.sip_method).to_string()),
            user_agent: (ua_len > 0)
                .then(|| String::from_utf8_lossy(&e.user_agent[..ua_len]).into_owned()),
        }
    }

    pub fn to_text(&self) -> String {
        let ep = |a: &str, p: u16| {
            let a = if a.contains(':') {
                format!("[{a}]")
            } else {
                a.to_string()
            };
            if p == 0 {
                a
            } else {
                format!("{a}:{p}")
            }
        };
        let mut s = format!(
            "{} {} {} {} {} -> {} on {}",
            self.time,
            self.action,
            self.reason,
            self.protocol,
            ep(&self.src, self.sport),
            ep(&self.dst, self.dport),
            self.interface
        );
        if let Some(m) = &self.method {
            s.push_str(&format!(" method={m}"));
        }
        if let Some(ua) = &self.user_agent {
            s.push_str(&format!(" user_agent={ua:?}"));
        }
        if self.suppressed > 0 {
            s.push_str(&format!(" (+{} suppressed)", self.suppressed));
        }
        s
    }
}

/// Unix ns → `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
pub fn rfc3339(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let ms = (unix_ns / 1_000_000) % 1000;
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Events fanned out to socket clients as JSON lines.
pub type Feed = broadcast::Sender<Arc<String>>;

/// Reads the ring buffer until the runtime stops: logs each event and
/// hands it to socket clients.
pub async fn pump(ring: RingBuf<MapData>, feed: Feed, log: EventLog) -> Result<()> {
    // SAFETY: the ring buffer owns its descriptor for as long as the AsyncFd
    // holds it, and nothing else closes it.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow!("cannot poll the EVENTS ring buffer: {e}"))?;
    let stdout = std::io::stdout();
    let mut names: std::collections::HashMap<u32, (String, std::time::Instant)> =
        Default::default();
    let mut name = |i: u32| {
        // Re-resolved every 10 s so a renamed interface shows up.
        if let Some((n, t)) = names.get(&i) {
            if t.elapsed().as_secs() < 10 {
                return n.clone();
            }
        }
        let n = ifname(i).unwrap_or_else(|| format!("ifindex {i}"));
        names.insert(i, (n.clone(), std::time::Instant::now()));
        n
    };
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        let mut batch = 0u32;
        while let Some(item) = ring.next() {
            batch += 1;
            if batch.is_multiple_of(512) {
                // Let socket clients drain between batches (one thread).
                tokio::task::yield_now().await;
            }
            let Some(raw) = decode(&item) else { continue };
            let ev = Event::from_raw_with(&raw, &mut name);
            let json = serde_json::to_string(&ev).unwrap_or_default();
            match log {
                EventLog::Text => log::info!(target: "sipguard::event", "{}", ev.to_text()),
                EventLog::Json => {
                    let mut out = stdout.lock();
                    let _ = writeln!(out, "{json}");
                }
                EventLog::Off => {}
            }
            // No receivers is fine: nobody is following.
            let _ = feed.send(Arc::new(json));
        }
        guard.clear_ready();
    }
}

/// Binds the events socket with mode 0600 (root only): the socket is
/// created under a umask that already leaves group and others out, so there
/// is no window in which another user could connect.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        // A socket left by a killed daemon: nobody can be listening on it
        // once we hold the pins, so it is replaced.
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    // SAFETY: umask only changes this process's file creation mask; the
    // daemon's runtime is single-threaded here.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let l = l.with_context(|| format!("cannot bind events socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Accepts `sipguard events` clients and streams JSON lines to each.
pub async fn serve(listener: UnixListener, feed: Feed) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let mut rx = feed.subscribe();
        tokio::spawn(async move {
            let mut buf = String::new();
            loop {
                let first = rx.recv().await;
                let mut next = Some(first);
                // Everything already queued goes out in one write.
                while let Some(r) = next.take() {
                    match r {
                        Ok(l) => buf.push_str(&l),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            buf.push_str(&format!("{{\"skipped\":{n}}}"))
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    buf.push('\n');
                    if buf.len() < 1 << 16 {
                        next = match rx.try_recv() {
                            Ok(l) => Some(Ok(l)),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                Some(Err(broadcast::error::RecvError::Lagged(n)))
                            }
                            Err(_) => None,
                        };
                    }
                }
                if stream.write_all(buf.as_bytes()).await.is_err() {
                    return;
                }
                buf.clear();
            }
        });
    }
}

pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123_000_000), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339(1_798_761_599_000_000_000),
            "2026-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn decodes_and_renders() {
        let mut raw = DropEvent {
            time_ns: crate::kernel::stateful::boot_ns(),
            src: [0; 16],
            dst: [0; 16],
            ifindex: 0,
            reason: Reason::DropBlocked as u32,
            suppressed: 4,
            sport: 40000,
            dport: 5060,
            family: 4,
            proto: 17,
            action: ACTION_DROP,
            sip_method: sip_method::INVITE,
            ua_len: 16,
            _pad0: [0; 3],
            user_agent: [0; EVENT_UA_LEN],
        };
        raw.src[..4].copy_from_slice(&[203, 0, 113, 66]);
        raw.dst[..4].copy_from_slice(&[100, 64, 0, 1]);
        raw.user_agent[..16].copy_from_slice(b"friendly-scanner");
        // SAFETY: viewing a plain struct as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &raw as *const _ as *const u8,
                std::mem::size_of::<DropEvent>(),
            )
        };
        let ev = Event::from_raw(&decode(bytes).unwrap());
        assert_eq!(ev.src, "203.0.113.66");
        assert_eq!(ev.reason, "blocked");
        assert_eq!(ev.method.as_deref(), Some("INVITE"));
        assert_eq!(ev.user_agent.as_deref(), Some("friendly-scanner"));
        let t = ev.to_text();
        assert!(
            t.contains("drop blocked udp 203.0.113.66:40000 -> 100.64.0.1:5060"),
            "{t}"
        );
        assert!(t.contains("(+4 suppressed)"), "{t}");
        assert!(decode(&bytes[..10]).is_none());
    }
}
