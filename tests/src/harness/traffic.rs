//! UDP traffic between the harness's namespaces, and what arrived.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::netns::Netns;

/// One datagram to send: from a socket bound to `from`, to `to`.
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// Sends every datagram from inside `ns`, one socket per source, in order.
pub fn send_from(ns: &Netns, datagrams: Vec<Datagram>) {
    ns.run(move || {
        let mut socks: HashMap<SocketAddr, UdpSocket> = HashMap::new();
        for d in datagrams {
            let s = socks
                .entry(d.from)
                .or_insert_with(|| UdpSocket::bind(d.from).expect("binding a sender"));
            s.send_to(&d.payload, d.to).expect("sending a datagram");
        }
    });
}

/// UDP sockets bound in one namespace, read once everything is sent.
pub struct Listener {
    socks: Vec<UdpSocket>,
}

impl Listener {
    pub fn bind(ns: &Netns, addrs: &[SocketAddr]) -> Listener {
        let addrs = addrs.to_vec();
        let socks = ns.run(move || {
            addrs
                .iter()
                .map(|a| {
                    let s = UdpSocket::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}"));
                    s.set_read_timeout(Some(Duration::from_millis(300)))
                        .expect("read timeout");
                    s
                })
                .collect()
        });
        Listener { socks }
    }

    /// Everything that arrives until each socket has been quiet 300 ms.
    pub fn collect(self) -> Arrivals {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        for s in &self.socks {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                got.push((canonical(from.ip()), buf[..n].to_vec()));
            }
        }
        Arrivals(got)
    }
}

/// Received datagrams: source address and payload.
#[derive(Default)]
pub struct Arrivals(pub Vec<(IpAddr, Vec<u8>)>);

/// Shown as datagrams per source (payloads would drown a failure message).
impl std::fmt::Debug for Arrivals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut per: std::collections::BTreeMap<IpAddr, usize> = Default::default();
        for (a, _) in &self.0 {
            *per.entry(*a).or_default() += 1;
        }
        f.debug_map().entries(per).finish()
    }
}

impl Arrivals {
    /// How many came from `src`.
    pub fn from(&self, src: impl Into<IpAddr>) -> usize {
        let src = src.into();
        self.0.iter().filter(|(a, _)| *a == src).count()
    }

    pub fn contains(&self, payload: &[u8]) -> bool {
        self.0.iter().any(|(_, p)| p == payload)
    }

    /// The ones whose payload satisfies `keep`.
    pub fn filter(&self, keep: impl Fn(&[u8]) -> bool) -> Arrivals {
        Arrivals(self.0.iter().filter(|(_, p)| keep(p)).cloned().collect())
    }
}

/// IPv4-mapped IPv6 sources as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// A UDP receiver counting datagrams per source address on a thread,
/// for traffic that runs while the test does other things.
pub struct Receiver {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<HashMap<IpAddr, u64>>>,
    handle: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start(ns: &Netns, port: u16) -> Receiver {
        Receiver::start_on(ns, SocketAddr::from(([0, 0, 0, 0], port)))
    }

    /// A receiver on one address (an IPv6 one next to [`Receiver::start`]'s
    /// IPv4 wildcard).
    pub fn start_on(ns: &Netns, addr: SocketAddr) -> Receiver {
        let sock = ns.run(move || UdpSocket::bind(addr).expect("binding receiver"));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(HashMap::<IpAddr, u64>::new()));
        let (s2, c2) = (stop.clone(), counts.clone());
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    *c2.lock().unwrap().entry(from.ip()).or_default() += 1;
                }
            }
        });
        Receiver {
            stop,
            counts,
            handle: Some(handle),
        }
    }

    pub fn count(&self, src: impl Into<IpAddr>) -> u64 {
        let src = src.into();
        self.counts.lock().unwrap().get(&src).copied().unwrap_or(0)
    }

    /// Waits until `src` has `n` datagrams or `timeout` passes.
    pub fn wait_for(&self, src: impl Into<IpAddr> + Copy, n: u64, timeout: Duration) -> u64 {
        let t0 = Instant::now();
        while self.count(src) < n && t0.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.count(src)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sends OPTIONS from `sock` to `to` every millisecond until
/// [`Steady::finish`]; counts what it sent.
pub struct Steady {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Steady {
    pub fn start(sock: UdpSocket, to: SocketAddr) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut n = 0u64;
            while !st.load(Ordering::Relaxed) {
                sock.send_to(format!("OPTIONS sip:{n}@x SIP/2.0\r\n\r\n").as_bytes(), to)
                    .expect("sending");
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        });
        Steady {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sending; returns how many datagrams went out.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("running");
        handle.join().expect("sender thread")
    }
}

impl Drop for Steady {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
