//! The legitimate side of a flood: a trusted caller in the sender's
//! namespace sends INVITEs at a steady rate to a callee in the receiver's
//! namespace, which answers each with a 200 OK. Nothing is retransmitted:
//! every INVITE lost to the filter or to the flood's queues shows up in the
//! counts.
//!
//! The INVITEs are sent from the flood's CPU (at a SCHED_FIFO priority
//! above the generator's, so they leave on time): veth processes a receive
//! queue on the CPU that first scheduled it, and an INVITE sent from
//! another CPU would move the whole flood's receive work there, which no
//! NIC does (its interrupt CPU serves the queue, calls and flood alike).
//! Answers and the callee run on another CPU.

use std::{
    collections::HashSet,
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context as _, Result};
use serde_json::{json, Value};
use sipguard_tests::harness::Netns;

/// The trusted caller's address (the sender namespace's own) and the
/// callee's (the receiver's).
pub const CALLER: [u8; 4] = [100, 64, 0, 2];
pub const CALLEE: [u8; 4] = [100, 64, 0, 1];
const CALLER_PORT: u16 = 5062;
const CALLEE_PORT: u16 = 5060;
/// INVITEs per second.
const RATE: u64 = 200;

fn invite(n: u64) -> Vec<u8> {
    format!(
        "INVITE sip:100@pbx.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 100.64.0.2:5062;branch=z9hG4bK{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@pbx.example.com>;tag={n}\r\n\
         To: <sip:100@pbx.example.com>\r\n\
         Call-ID: {n}@100.64.0.2\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@100.64.0.2:5062>\r\n\
         User-Agent: Yealink SIP-T46S 66.86.0.15\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn call_id(msg: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(msg).ok()?;
    let line = text.lines().find(|l| l.starts_with("Call-ID: "))?;
    line["Call-ID: ".len()..].split('@').next()?.parse().ok()
}

fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; affinity of the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// SCHED_FIFO at `priority` for the calling thread (best effort: without
/// it the INVITEs are late, and the counts still say what arrived).
fn realtime(priority: i32) {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: scheduling policy of the calling thread only.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
}

pub struct Calls {
    stop_caller: Arc<AtomicBool>,
    stop_callee: Arc<AtomicBool>,
    caller: JoinHandle<Result<(u64, u64)>>,
    callee: JoinHandle<Result<u64>>,
}

#[derive(Clone, Copy, Debug)]
pub struct CallCounts {
    /// INVITEs the caller sent.
    pub sent: u64,
    /// INVITEs the callee received.
    pub received: u64,
    /// Distinct calls the caller got a 200 OK for.
    pub answered: u64,
}

impl CallCounts {
    pub fn json(self) -> Value {
        json!({
            "invites_sent": self.sent,
            "invites_received": self.received,
            "answered": self.answered,
            "lost": self.sent.saturating_sub(self.answered),
        })
    }
}

impl Calls {
    /// Starts the callee in `rx` and the caller in `tx`: the INVITEs go
    /// out from `flood_cpu` at SCHED_FIFO priority `priority`, the rest
    /// runs on `cpu`.
    pub fn start(
        tx: &Netns,
        rx: &Netns,
        flood_cpu: usize,
        priority: i32,
        cpu: usize,
    ) -> Result<Calls> {
        let callee_sock = rx
            .run(|| UdpSocket::bind(SocketAddr::from((CALLEE, CALLEE_PORT))))
            .context("binding the callee")?;
        let caller_sock = tx
            .run(|| UdpSocket::bind(SocketAddr::from((CALLER, CALLER_PORT))))
            .context("binding the caller")?;
        for s in [&callee_sock, &caller_sock] {
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
        }
        let stop_callee = Arc::new(AtomicBool::new(false));
        let st = stop_callee.clone();
        let callee = std::thread::spawn(move || -> Result<u64> {
            pin_to(cpu);
            let mut buf = [0u8; 2048];
            let mut received = 0u64;
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = callee_sock.recv_from(&mut buf) else {
                    continue;
                };
                let Some(id) = call_id(&buf[..n]) else {
                    continue;
                };
                received += 1;
                let ok = format!(
                    "SIP/2.0 200 OK\r\nCall-ID: {id}@100.64.0.2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
                );
                callee_sock.send_to(ok.as_bytes(), from)?;
            }
            Ok(received)
        });
        let stop_caller = Arc::new(AtomicBool::new(false));
        let st = stop_caller.clone();
        let caller = std::thread::spawn(move || -> Result<(u64, u64)> {
            pin_to(flood_cpu);
            realtime(priority);
            let to = SocketAddr::from((CALLEE, CALLEE_PORT));
            let recv = caller_sock.try_clone()?;
            let done = Arc::new(AtomicBool::new(false));
            let d2 = done.clone();
            let answers = std::thread::spawn(move || {
                pin_to(cpu);
                let mut seen = HashSet::new();
                let mut buf = [0u8; 2048];
                while !d2.load(Ordering::Relaxed) {
                    if let Ok(n) = recv.recv(&mut buf) {
                        if buf[..n].starts_with(b"SIP/2.0 200") {
                            if let Some(id) = call_id(&buf[..n]) {
                                seen.insert(id);
                            }
                        }
                    }
                }
                seen.len() as u64
            });
            let t0 = Instant::now();
            let mut sent = 0u64;
            while !st.load(Ordering::Relaxed) {
                caller_sock.send_to(&invite(sent), to)?;
                sent += 1;
                let next = t0 + Duration::from_micros(sent * 1_000_000 / RATE);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            // Answers to the last INVITEs are still on their way.
            std::thread::sleep(Duration::from_millis(300));
            done.store(true, Ordering::Relaxed);
            let answered = answers.join().map_err(|_| anyhow!("answer thread"))?;
            Ok((sent, answered))
        });
        Ok(Calls {
            stop_caller,
            stop_callee,
            caller,
            callee,
        })
    }

    /// Stops calling; the counts once the last answers had time to arrive.
    pub fn finish(self) -> Result<CallCounts> {
        // The caller stops first and waits for its answers; the callee
        // keeps answering until then.
        self.stop_caller.store(true, Ordering::Relaxed);
        let caller = self.caller.join();
        self.stop_callee.store(true, Ordering::Relaxed);
        let received = self.callee.join().map_err(|_| anyhow!("callee"))??;
        let (sent, answered) = caller.map_err(|_| anyhow!("caller"))??;
        Ok(CallCounts {
            sent,
            received,
            answered,
        })
    }
}
