//! Servers the registry and daemon tests talk to: Debian's `docker-registry` and
//! `podman system service` started on 127.0.0.1 and stopped by PID, an in-process fake
//! registry for hostile behaviour a real one does not produce, and a TCP proxy that stalls an
//! upload midway.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::{Podman, ScratchDir, free_port, require};

/// Sends SIGTERM to `child`, waits up to `grace` for it to exit, then kills it.
fn stop(child: &mut Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `GET path` over a plain HTTP connection to `addr`: the status code, or `None` when
/// nothing answers.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Debian's `docker-registry` (distribution 2.8) serving a scratch directory on a free
/// loopback port, optionally behind htpasswd basic auth; killed (by PID) on drop.
pub struct LocalRegistry {
    child: Child,
    port: u16,
    dir: ScratchDir,
}

impl LocalRegistry {
    /// `None` (after [`require`]) when the registry or `htpasswd` is not installed.
    pub fn start(basic_auth: Option<(&str, &str)>) -> Option<Self> {
        if !require("docker-registry") || (basic_auth.is_some() && !require("htpasswd")) {
            return None;
        }
        let dir = ScratchDir::new("kiln-registry-");
        let mut auth = String::new();
        if let Some((user, password)) = basic_auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            fs::write(&file, out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd: {{realm: kiln-test, path: {}}}\n",
                file.display()
            );
        }
        // A port taken between free_port() and the registry's bind: try another.
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("registry.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: 127.0.0.1:{port}}}\n{auth}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let log = fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if matches!(http_status(addr, "/v2/"), Some(200 | 401)) {
                    return Some(Self { child, port, dir });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start:\n{}",
            fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        // The registry holds nothing worth a graceful stop; its data directory goes too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `podman system service` on a unix socket, using the storage of a [`Podman`], so images
/// loaded through the Docker API can be run with that podman; stopped (by PID) on drop.
pub struct PodmanService<'a> {
    pub podman: &'a Podman,
    child: Child,
    socket: PathBuf,
}

impl<'a> PodmanService<'a> {
    pub fn start(podman: &'a Podman, dir: &Path) -> Self {
        let socket = dir.join("podman.sock");
        let log = fs::File::create(dir.join("podman-service.log")).unwrap();
        let mut child = podman
            .command()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Self::ping(&socket) {
                return Self {
                    podman,
                    child,
                    socket,
                };
            }
            if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                stop(&mut child, Duration::from_secs(5));
                panic!(
                    "podman system service did not start:\n{}",
                    fs::read_to_string(dir.join("podman-service.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(socket: &Path) -> bool {
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.") && response.contains(" 200 ")
    }

    /// `unix://…`, for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for PodmanService<'_> {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

/// A request the fake registry received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The fake registry's answer.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Announce the whole body's length but close the connection after this many bytes.
    pub truncate_at: Option<usize>,
    /// Stop answering midway and hold the connection open until the registry stops.
    pub stall: Option<Stall>,
}

/// Where a [`Reply`] stalls.
#[derive(Debug, Clone, Copy)]
pub enum Stall {
    /// Before the head: the request is read, and nothing ever answers it.
    Silent,
    /// After the head and this many bytes of the body (whose whole length is announced).
    After(usize),
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            body: body.into(),
            ..Self::default()
        }
    }

    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 answering each request with `handler(request, n)`, `n`
/// being how many times the same method and path were asked before; one request per
/// connection. It logs every request and stops on drop.
pub struct FakeRegistry {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    log: Arc<Mutex<Vec<Request>>>,
    stalls: Arc<AtomicUsize>,
}

impl FakeRegistry {
    pub fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stalls = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let stop = Arc::clone(&stop);
            let log = Arc::clone(&log);
            let stalls = Arc::clone(&stalls);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        Self::serve(stream, &*handler, &log, &stalls, &stop);
                    }
                }
            })
        };
        Self {
            addr,
            stop,
            thread: Some(thread),
            log,
            stalls,
        }
    }

    fn serve(
        stream: TcpStream,
        handler: &Handler,
        log: &Mutex<Vec<Request>>,
        stalls: &AtomicUsize,
        stop: &AtomicBool,
    ) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).is_err() {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request {
            method: method.to_string(),
            path: path.to_string(),
            headers,
        };
        let seen = {
            let mut log = log.lock().unwrap();
            let seen = log
                .iter()
                .filter(|r| r.method == request.method && r.path == request.path)
                .count();
            log.push(request.clone());
            seen
        };
        let reply = handler(&request, seen);
        let mut out = stream;
        // Holds the connection, answering nothing more, until the registry stops (one
        // request at a time: nothing else is served meanwhile).
        let hold = |out: &mut TcpStream| {
            let _ = out.flush();
            stalls.fetch_add(1, Ordering::SeqCst);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        if let Some(Stall::Silent) = reply.stall {
            hold(&mut out);
            return;
        }
        let mut head = format!(
            "HTTP/1.1 {} Status\r\nContent-Length: {}\r\nConnection: close\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            use std::fmt::Write as _;
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let _ = out.write_all(head.as_bytes());
        if request.method != "HEAD" {
            let end = reply
                .truncate_at
                .unwrap_or(reply.body.len())
                .min(reply.body.len());
            if let Some(Stall::After(sent)) = reply.stall {
                let _ = out.write_all(&reply.body[..sent.min(end)]);
                hold(&mut out);
                return;
            }
            let _ = out.write_all(&reply.body[..end]);
        }
        let _ = out.flush();
        let _ = out.shutdown(std::net::Shutdown::Both);
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// How many replies have stalled so far (see [`Reply::stall`]).
    pub fn stalled(&self) -> usize {
        self.stalls.load(Ordering::SeqCst)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A TCP proxy to `target` that forwards everything until clients have sent `limit` bytes
/// in total, then holds every connection open without forwarding more: an upload that
/// stalls midway, for a test to kill its client.
pub struct StallingProxy {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl StallingProxy {
    pub fn start(target: SocketAddr, limit: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        {
            let (sent, stop, streams) =
                (Arc::clone(&sent), Arc::clone(&stop), Arc::clone(&streams));
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(upstream) = TcpStream::connect(target) else {
                        continue;
                    };
                    {
                        let mut streams = streams.lock().unwrap();
                        streams.push(client.try_clone().unwrap());
                        streams.push(upstream.try_clone().unwrap());
                    }
                    let (mut from_client, mut to_upstream) =
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
                    std::thread::spawn(move || {
                        let mut buf = [0; 16 * 1024];
                        loop {
                            if sent.load(Ordering::SeqCst) >= limit {
                                // Stalled: hold the connection until the test ends.
                                while !stop.load(Ordering::SeqCst) {
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                                return;
                            }
                            match from_client.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    sent.fetch_add(n as u64, Ordering::SeqCst);
                                    if to_upstream.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                    let (mut from_upstream, mut to_client) = (upstream, client);
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from_upstream, &mut to_client);
                    });
                }
            });
        }
        Self {
            addr,
            sent,
            stop,
            streams,
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Whether clients have sent `limit` bytes (the upload is stalled).
    pub fn stalled(&self, limit: u64) -> bool {
        self.sent.load(Ordering::SeqCst) >= limit
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().iter() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        let _ = TcpStream::connect(self.addr);
    }
}
