//! A webhook catcher on a loopback port: records every request (path, JSON body) and answers
//! with the statuses it was given (then 200). Over plain HTTP, or over TLS with a rustls server
//! configuration (which may require client certificates). Stops when dropped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Per path prefix, the statuses still to answer.
type Plan = Vec<(String, VecDeque<u16>)>;

pub struct Catcher {
    pub addr: SocketAddr,
    https: bool,
    received: Arc<Mutex<Vec<(String, Value)>>>,
    stop: Arc<AtomicBool>,
}

impl Catcher {
    /// `statuses`: per path, the answers to give first (for example 429 then 500); then 200.
    pub fn start(statuses: Vec<(&str, Vec<u16>)>) -> Catcher {
        Catcher::start_with(statuses, None)
    }

    /// Like [`Catcher::start`], over TLS with `tls` (its URLs are https). A connection whose
    /// handshake fails (no client certificate when one is required) records nothing.
    pub fn start_tls(statuses: Vec<(&str, Vec<u16>)>, tls: Arc<rustls::ServerConfig>) -> Catcher {
        Catcher::start_with(statuses, Some(tls))
    }

    fn start_with(
        statuses: Vec<(&str, Vec<u16>)>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Catcher {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let plan: Arc<Mutex<Plan>> = Arc::new(Mutex::new(
            statuses
                .into_iter()
                .map(|(p, s)| (p.to_string(), s.into()))
                .collect(),
        ));
        let https = tls.is_some();
        let (rec, st) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                match &tls {
                    None => serve(conn, &plan, &rec),
                    Some(config) => {
                        let Ok(server) = rustls::ServerConnection::new(config.clone()) else {
                            continue;
                        };
                        serve(rustls::StreamOwned::new(server, conn), &plan, &rec);
                    }
                }
            }
        });
        Catcher {
            addr,
            https,
            received,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Bodies received on paths starting with `prefix`, in order.
    pub fn bodies(&self, prefix: &str) -> Vec<Value> {
        self.received
            .lock()
            .expect("rec")
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits until `ok` holds for the bodies on `prefix`; panics with them after `secs`.
    pub fn wait(
        &self,
        prefix: &str,
        secs: u64,
        what: &str,
        ok: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let b = self.bodies(prefix);
            if ok(&b) {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "waited {secs} s for {what}; got {b:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Catcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one request from `conn`, records it and answers it as planned.
fn serve(conn: impl Read + Write, plan: &Mutex<Plan>, rec: &Mutex<Vec<(String, Value)>>) {
    let mut r = BufReader::new(conn);
    let mut first = String::new();
    if r.read_line(&mut first).is_err() || first.is_empty() {
        return;
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    let _ = r.read_exact(&mut body);
    let status = {
        let mut p = plan.lock().expect("plan");
        p.iter_mut()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .and_then(|(_, q)| q.pop_front())
            .unwrap_or(200)
    };
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    rec.lock().expect("rec").push((path, value));
    let mut conn = r.into_inner();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = conn.flush();
}
