//! The `astranet` command driven as operators run it: real processes on loopback,
//! real TCP clients and servers at both ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_astranet");

/// A running `astranet` process, killed on drop; its stdout lines arrive on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        Self::start_with(args, &[])
    }

    fn start_with(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("astranet starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines, seen: Vec::new() }
    }

    /// The rest of the first stdout line that starts with `prefix`.
    fn line(&mut self, prefix: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return l[prefix.len()..].trim().to_string();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line =
                self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no line {prefix:?} in {:?}", self.seen));
            self.seen.push(line.clone());
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn router() -> (Proc, String) {
    let mut r = Proc::start(&["node", "--listen", "127.0.0.1:0", "--role", "router"]);
    let addr = r.line("listening ");
    (r, addr)
}

/// A TCP echo server; each connection echoes until EOF, then shuts down writing.
fn echo_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { break };
            std::thread::spawn(move || {
                let mut back = c.try_clone().unwrap();
                let _ = std::io::copy(&mut c, &mut back);
                let _ = back.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// Retries `f` until it returns Some, for what needs an announcement to travel.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `data` (then half-closes) and reads the whole answer, on two threads.
fn exchange(addr: &str, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = c.try_clone()?;
    let writer = std::thread::spawn(move || {
        w.write_all(&data)?;
        w.shutdown(Shutdown::Write)
    });
    let mut back = Vec::new();
    c.read_to_end(&mut back)?;
    writer.join().unwrap()?;
    Ok(back)
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A router, an echo server exposed as "echo", and a forwarder to it (`forward_args`
/// added): (router, expose, forward, the forwarder's address), once a connection
/// through it echoes.
fn forwarded_echo(forward_args: &[&str]) -> (Proc, Proc, Proc, String) {
    let (r, raddr) = router();
    let backend = echo_server();
    let mut e = Proc::start(&["expose", "echo", "--to", &backend, "--join", &raddr]);
    e.line("exposing ");
    let mut f = Proc::start(
        &[&["forward", "--listen", "127.0.0.1:0", "--to", "echo", "--join", &raddr], forward_args].concat(),
    );
    let local = f.line("forwarding ").split(' ').next().unwrap().to_string();
    eventually("the name reaching the forwarder", || exchange(&local, b"ping".to_vec()).ok().filter(|b| b == b"ping"));
    (r, e, f, local)
}

#[test]
fn expose_and_forward_carry_tcp_both_ways() {
    let (_r, _e, _f, local) = forwarded_echo(&[]);

    // 64 MiB each way through one connection, every byte checked.
    let data = pattern(64 << 20, 7);
    assert!(exchange(&local, data.clone()).unwrap() == data, "64 MiB came back intact");

    // 200 connections at once, each half-closed after its data.
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let local = local.clone();
            std::thread::spawn(move || {
                let data = pattern(64 << 10, i + 1);
                assert!(exchange(&local, data.clone()).unwrap() == data, "connection {i}");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// An HTTP server answering `GET /healthz` with 200 while `healthy`, 503 otherwise,
/// and anything else with its `body`; keeps connections alive.
fn http_server(body: &'static str, healthy: Arc<AtomicBool>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(c) = conn else { break };
            let healthy = healthy.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut w = c;
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let (status, text) = if head.starts_with("GET /healthz") {
                        if healthy.load(Ordering::SeqCst) {
                            ("200 OK", "ok")
                        } else {
                            ("503 Unavailable", "down")
                        }
                    } else {
                        ("200 OK", body)
                    };
                    let resp = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{text}", text.len());
                    if w.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One HTTP/1.1 request on `conn`; returns (status, body).
fn get(conn: &mut BufReader<TcpStream>, host: &str, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.get_mut().write_all(req.as_bytes()).unwrap();
    let mut status = String::new();
    conn.read_line(&mut status).unwrap();
    let code: u16 = status.split(' ').nth(1).unwrap().parse().unwrap();
    let mut len = 0;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    conn.read_exact(&mut body).unwrap();
    (code, String::from_utf8(body).unwrap())
}

fn status_json(control: &str) -> serde_json::Value {
    let out = Command::new(BIN).args(["status", "--control", control, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn service_names(v: &serde_json::Value) -> Vec<String> {
    v["services"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// The TLS flags of node `name` whose files `astranet keys` wrote into `keys`.
fn tls_args(keys: &str, name: &str) -> Vec<String> {
    ["--tls-ca", &format!("{keys}/ca.pem"), "--tls-cert", &format!("{keys}/{name}.pem")]
        .into_iter()
        .chain(["--tls-key", &format!("{keys}/{name}.key")])
        .map(str::to_string)
        .collect()
}

/// A control socket path in the temporary directory, removed when dropped: the tests
/// kill their nodes, which then cannot remove it themselves.
struct TmpSocket(String);

impl std::ops::Deref for TmpSocket {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for TmpSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tmp_socket(tag: &str) -> TmpSocket {
    TmpSocket(format!("{}/astranet-test-{}-{tag}.sock", std::env::temp_dir().display(), std::process::id()))
}

#[test]
fn the_gateway_routes_by_host_pools_connections_and_answers_502() {
    let (_r, raddr) = router();
    let up = Arc::new(AtomicBool::new(true));
    let a = http_server("from a", up.clone());
    let b = http_server("from b", up);
    let mut ea = Proc::start(&["expose", "svc-a", "--to", &a, "--join", &raddr]);
    let mut eb = Proc::start(&["expose", "svc-b", "--to", &b, "--join", &raddr]);
    ea.line("exposing ");
    eb.line("exposing ");
    let mut g = Proc::start(&["gateway", "--http", "127.0.0.1:0", "--join", &raddr]);
    let addr = g.line("gateway http://");
    let mut conn = BufReader::new(TcpStream::connect(&addr).unwrap());
    eventually("both names reaching the gateway", || {
        let (ca, _) = get(&mut conn, "svc-a", "/");
        let (cb, _) = get(&mut conn, "svc-b:80", "/");
        (ca == 200 && cb == 200).then_some(())
    });
    // One client connection, several requests, two services.
    for _ in 0..3 {
        assert_eq!(get(&mut conn, "svc-a", "/x"), (200, "from a".to_string()));
        assert_eq!(get(&mut conn, "svc-b", "/y"), (200, "from b".to_string()));
    }
    // Host names are case-insensitive.
    assert_eq!(get(&mut conn, "SVC-A", "/x"), (200, "from a".to_string()));
    let (code, body) = get(&mut conn, "nobody", "/");
    assert_eq!(code, 502);
    assert!(body.contains("nobody"), "{body}");
}

#[test]
fn http_check_withdraws_and_republishes() {
    let control = tmp_socket("check");
    let mut r = Proc::start(&["node", "--listen", "127.0.0.1:0", "--role", "router", "--control", &control]);
    let raddr = r.line("listening ");
    r.line("control ");
    let healthy = Arc::new(AtomicBool::new(true));
    let web = http_server("page", healthy.clone());
    let _e = Proc::start(&[
        "expose",
        "web",
        "--to",
        &web,
        "--join",
        &raddr,
        "--http-check",
        "/healthz",
        "--check-interval",
        "0.1",
    ]);
    let control: &str = &control;
    let has_web =
        |want: bool| move || (service_names(&status_json(control)).contains(&"web".to_string()) == want).then_some(());
    eventually("web published", has_web(true));
    healthy.store(false, Ordering::SeqCst);
    eventually("web withdrawn while unhealthy", has_web(false));
    healthy.store(true, Ordering::SeqCst);
    eventually("web published again", has_web(true));
}

#[test]
fn sigterm_drains_in_flight_connections_and_refuses_new_ones() {
    let (_r, mut e, _f, local) = forwarded_echo(&["--dial-timeout", "1"]);

    // A transfer is in flight when expose gets SIGTERM; it completes.
    let mut c = TcpStream::connect(&local).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let first = pattern(1 << 20, 3);
    c.write_all(&first).unwrap();
    let mut back = vec![0; first.len()];
    c.read_exact(&mut back).unwrap();
    e.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // Withdrawn: a new connection through the forwarder gets nothing.
    let refused = exchange(&local, b"late".to_vec()).map(|b| b.is_empty()).unwrap_or(true);
    assert!(refused, "a new dial after SIGTERM is refused");
    let second = pattern(1 << 20, 4);
    c.write_all(&second).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest == second, "the in-flight connection finished its transfer");
    assert!(e.wait(Duration::from_secs(20)).success(), "exit status 0 after draining");
}

#[test]
fn a_second_signal_ends_the_drain() {
    let (_r, mut e, _f, local) = forwarded_echo(&[]);
    // An idle connection would hold the drain for its 30 s.
    let mut idle = TcpStream::connect(&local).unwrap();
    idle.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    idle.read_exact(&mut one).unwrap();
    e.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(e.child.try_wait().unwrap().is_none(), "the first signal waits for the connection");
    let started = Instant::now();
    e.signal(libc::SIGTERM);
    e.wait(Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(5), "the second signal ended the drain");
}

#[test]
fn status_and_metrics_show_what_the_node_knows() {
    let control = tmp_socket("status");
    let mut r = Proc::start(&[
        "node",
        "--listen",
        "127.0.0.1:0",
        "--role",
        "router",
        "--control",
        &control,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let raddr = r.line("listening ");
    let host = r.line("host ");
    let metrics = r.line("metrics http://").trim_end_matches("/metrics").to_string();
    let mut n = Proc::start(&["node", "--join", &raddr, "--serve-echo", "db"]);
    let peer = n.line("host ");
    n.line("serving ");

    let v = eventually("the link and the service in the status", || {
        let v = status_json(&control);
        (v["links"].as_array().unwrap().len() == 1 && service_names(&v).contains(&"db".to_string())).then_some(v)
    });
    assert_eq!(v["host_id"], host.as_str());
    assert_eq!(v["role"], "router");
    assert_eq!(v["links"][0]["peer"], peer.as_str());
    assert_eq!(v["stats"]["links"], 1);
    let table = Command::new(BIN).args(["status", "--control", &control]).output().unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("LINKS") && table.contains(&peer) && table.contains("db"), "{table}");

    // Prometheus text: HELP/TYPE comments and `name{labels} value` samples.
    let mut conn = BufReader::new(TcpStream::connect(&metrics).unwrap());
    let (code, text) = get(&mut conn, "metrics", "/metrics");
    assert_eq!(code, 200);
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let base = name.split('{').next().unwrap();
        assert!(base.starts_with("astranet_") && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        assert!(!name.contains('{') || name.ends_with('}'), "{line}");
    }
    assert!(text.contains("astranet_links 1"), "{text}");
    assert!(text.contains(&format!("peer=\"{peer}\"")), "{text}");
}

#[test]
fn options_come_from_flags_then_environment_then_file() {
    let dir = std::env::temp_dir().join(format!("astranet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(&file, "role = \"router\"\nenv = \"from-file\"\nlisten = [\"127.0.0.1:0\"]\n").unwrap();
    let control = tmp_socket("config");
    let config = file.to_str().unwrap();
    // The file gives role and listen; the environment overrides env; a flag overrides the environment's control.
    let mut n = Proc::start_with(
        &["node", "--config", config, "--control", &control],
        &[("ASTRANET_ENV", "from-env"), ("ASTRANET_CONTROL", "/nonexistent/ignored.sock")],
    );
    n.line("listening ");
    n.line("control ");
    let v = status_json(&control);
    assert_eq!(v["role"], "router");
    assert_eq!(v["env"], "from-env");
    drop(n);
    // A relative path in the file is the file's folder's, wherever the command runs;
    // `status` finds the control socket from the same file.
    std::fs::write(&file, "role = \"router\"\nlisten = [\"127.0.0.1:0\"]\ncontrol = \"node.sock\"\n").unwrap();
    let mut n = Proc::start(&["node", "--config", config]);
    n.line("control ");
    assert!(dir.join("node.sock").exists(), "the control socket is beside the file");
    let out = Command::new(BIN).args(["status", "--config", config, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["role"], "router");
    drop(n);
    let _ = std::fs::remove_file(dir.join("node.sock"));
    // Unknown keys are an error, not silently ignored.
    std::fs::write(&file, "rol = \"router\"\n").unwrap();
    let out = Command::new(BIN).args(["node", "--config", config]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rol"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(dir);
}

/// A server that answers an upgrade request with 101 and then echoes raw bytes.
fn upgrade_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(c) = conn else { break };
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut w = c;
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let _ =
                    w.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n");
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 || w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn the_gateway_passes_upgrades_through_and_routes_by_path() {
    let (_r, raddr) = router();
    let ws = upgrade_server();
    let mut e = Proc::start(&["expose", "ws", "--to", &ws, "--join", &raddr]);
    e.line("exposing ");
    let pages = http_server("a page", Arc::new(AtomicBool::new(true)));
    let mut p = Proc::start(&["expose", "pages", "--to", &pages, "--join", &raddr]);
    p.line("exposing ");
    let mut g = Proc::start(&["gateway", "--http", "127.0.0.1:0", "--join", &raddr]);
    let addr = g.line("gateway http://");
    let mut gp = Proc::start(&["gateway", "--http", "127.0.0.1:0", "--route", "path", "--join", &raddr]);
    let by_path = gp.line("gateway http://");

    // After the service's 101, bytes flow both ways through the gateway.
    let mut conn = eventually("the upgrade going through", || {
        let mut c = BufReader::new(TcpStream::connect(&addr).ok()?);
        let req = "GET /chat HTTP/1.1\r\nHost: ws\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n";
        c.get_mut().write_all(req.as_bytes()).ok()?;
        let mut status = String::new();
        c.read_line(&mut status).ok()?;
        if !status.contains(" 101 ") {
            return None;
        }
        let mut line = String::new();
        while c.read_line(&mut line).ok()? > 0 && line != "\r\n" {
            line.clear();
        }
        Some(c)
    });
    conn.get_mut().write_all(b"raw bytes after the upgrade").unwrap();
    let mut back = [0u8; 27];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"raw bytes after the upgrade");

    // --route path: the first segment names the service and leaves the path.
    let mut c = BufReader::new(TcpStream::connect(&by_path).unwrap());
    let (code, body) =
        eventually("the path route", || Some(get(&mut c, "anything", "/pages/x")).filter(|r| r.0 == 200));
    assert_eq!((code, body.as_str()), (200, "a page"));
}

#[test]
fn expose_runs_the_application_and_ends_with_it() {
    let (_r, raddr) = router();
    let backend = echo_server();
    let mut e =
        Proc::start(&["expose", "app", "--to", &backend, "--join", &raddr, "--", "sh", "-c", "sleep 1; exit 3"]);
    e.line("exposing ");
    let status = e.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "the application's exit status is the command's");
}

#[test]
fn expose_stops_its_application_when_the_node_cannot_start() {
    // A "router" that accepts TCP and never answers: the join fails after 1 s, when
    // the application has long started.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let pidfile = std::env::temp_dir().join(format!("astranet-test-{}-app.pid", std::process::id()));
    let _ = std::fs::remove_file(&pidfile);
    let app = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let mut e = Proc::start(&[
        "expose",
        "app",
        "--to",
        "127.0.0.1:9",
        "--join",
        &addr,
        "--handshake-timeout",
        "1",
        "--",
        "sh",
        "-c",
        &app,
    ]);
    let status = e.wait(Duration::from_secs(20));
    assert!(!status.success(), "the node could not join");
    // Refused at once (without them the node would run, joined to nothing).
    for bad in [["--to", "8080", "--check-interval", "1"], ["--to", "127.0.0.1:9", "--check-interval", "0"]] {
        let mut e = Proc::start(&[&["expose", "app"][..], &bad[..]].concat());
        assert!(!e.wait(Duration::from_secs(10)).success(), "{bad:?} is refused");
    }
    let pid: i32 = std::fs::read_to_string(&pidfile).expect("the application started").trim().parse().unwrap();
    let _ = std::fs::remove_file(&pidfile);
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    if alive {
        // SAFETY: a plain signal; the test must not leave it behind.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(!alive, "the application outlived its node");
}

#[test]
fn one_router_down_of_two_is_retried_and_none_up_is_an_error_naming_it() {
    let (_r, raddr) = router();
    let down = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string(); // closed again
    let mut n = Proc::start(&["node", "--join", &down, "--join", &raddr]);
    assert!(n.line(&format!("joined {raddr} peer ")).len() == 16);
    std::thread::sleep(Duration::from_millis(300));
    assert!(n.child.try_wait().unwrap().is_none(), "the node runs on with one router");
    let out = Command::new(BIN).args(["node", "--join", &down]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot join {down}: ")), "{err}");
}

#[test]
fn the_control_path_replaces_only_a_socket() {
    let path = tmp_socket("precious"); // removed when the test ends, however it ends
    std::fs::write(&*path, "precious").unwrap();
    let mut n = Proc::start(&["node", "--listen", "127.0.0.1:0", "--control", &path]);
    let status = n.wait(Duration::from_secs(20));
    assert!(!status.success(), "a node whose control path is a file does not start");
    assert_eq!(std::fs::read_to_string(&*path).unwrap(), "precious");
}

#[test]
fn keys_last_the_years_asked_and_stay_in_their_folder() {
    let dir = std::env::temp_dir().join(format!("astranet-keys-years-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = dir.to_str().unwrap().to_string();
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    assert!(run(&["keys", "ca", "--out", &keys]).status.success());
    assert!(run(&["keys", "node", "web", "--ca", &keys, "--out", &keys, "--years", "3"]).status.success());
    let pem = std::fs::read_to_string(dir.join("web.pem")).unwrap();
    let params = rcgen::CertificateParams::from_ca_cert_pem(&pem).unwrap();
    let now = time::OffsetDateTime::now_utc();
    assert!(params.not_before <= now && now - params.not_before < time::Duration::days(1), "{:?}", params.not_before);
    let days = (params.not_after - now).whole_days();
    assert!((3 * 365 - 2..=3 * 365).contains(&days), "valid for {days} more days, not 3 years");
    for bad in [
        vec!["keys", "node", "../escape", "--ca", &keys, "--out", &keys],
        vec!["keys", "node", "web2", "--ca", &keys, "--out", &keys, "--years", "0"],
    ] {
        assert!(!run(&bad).status.success(), "{bad:?} should be refused");
    }
    assert!(!dir.join("../escape.pem").exists() && !dir.join("web2.pem").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_make_a_tls_mesh_that_refuses_plaintext() {
    let dir = std::env::temp_dir().join(format!("astranet-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = dir.to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["keys", "ca", "--out", &keys]);
    run(&["keys", "node", "router", "--ca", &keys, "--out", &keys]);
    run(&["keys", "node", "web", "--ca", &keys, "--out", &keys, "--host-id", "00000000000000ab"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("web.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private keys are for their owner only");

    let tls = |name: &str| tls_args(&keys, name);
    let control = tmp_socket("tls");
    let mut args: Vec<String> = ["node", "--listen", "127.0.0.1:0", "--role", "router", "--control", &control]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(tls("router"));
    let mut r = Proc::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let raddr = r.line("listening ");
    r.line("control ");

    let mut args: Vec<String> =
        ["node", "--join", &raddr, "--serve-echo", "db"].iter().map(|s| s.to_string()).collect();
    args.extend(tls("web"));
    let mut web = Proc::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(web.line("host "), "00000000000000ab", "the host id is the certificate's");
    let v = eventually("the TLS link in the status", || {
        let v = status_json(&control);
        (v["links"].as_array().unwrap().len() == 1).then_some(v)
    });
    assert_eq!(v["links"][0]["secure"], true);
    assert_eq!(v["links"][0]["peer"], "00000000000000ab");

    // A node without TLS is refused.
    let out = Command::new(BIN).args(["probe", "--join", &raddr, "--stats", "--wait", "0.2"]).output().unwrap();
    assert!(!out.status.success(), "a plaintext node joined a TLS mesh");
    assert_eq!(status_json(&control)["links"].as_array().unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn access_rules_from_the_config_file() {
    let dir = std::env::temp_dir().join(format!("astranet-access-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = dir.to_str().unwrap().to_string();
    let run = |args: &[&str]| assert!(Command::new(BIN).args(args).status().unwrap().success(), "{args:?}");
    run(&["keys", "ca", "--out", &keys]);
    for name in ["router", "web-1", "stranger"] {
        run(&["keys", "node", name, "--ca", &keys, "--out", &keys]);
    }
    let config = dir.join("router.toml");
    // Paths relative to the file's folder, which holds the keys.
    std::fs::write(
        &config,
        "listen = [\"127.0.0.1:0\"]\nrole = \"router\"\ntls-ca = \"ca.pem\"\ntls-cert = \"router.pem\"\n\
         tls-key = \"router.key\"\n\n[[access]]\npeers = \"web-*\"\nannounce = [\"web*\"]\n",
    )
    .unwrap();
    let control = tmp_socket("access");
    let mut r = Proc::start(&["node", "--config", config.to_str().unwrap(), "--control", &control]);
    let raddr = r.line("listening ");
    r.line("control ");
    let tls = |name: &str| tls_args(&keys, name);
    let mut args: Vec<String> =
        ["node", "--join", &raddr, "--serve-echo", "web", "--serve-echo", "db"].iter().map(|s| s.to_string()).collect();
    args.extend(tls("web-1"));
    let mut web = Proc::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    web.line("serving ");
    // "web" is announced; "db" is not in web-1's rule.
    eventually("web in the router's services", || {
        service_names(&status_json(&control)).contains(&"web".into()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!service_names(&status_json(&control)).contains(&"db".to_string()));
    // No rule names "stranger": it does not get in.
    let mut args: Vec<String> =
        ["probe", "--join", &raddr, "--stats", "--wait", "0.2"].iter().map(|s| s.to_string()).collect();
    args.extend(tls("stranger"));
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(!out.status.success(), "a node no rule names joined");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn json_logs_end_with_a_json_error() {
    let missing = tmp_socket("never-served");
    let out = Command::new(BIN).args(["--log-format", "json", "status", "--control", &missing]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> =
        err.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let last = lines.last().expect("an error line");
    assert_eq!(last["level"], "ERROR", "{err}");
    assert!(last["fields"]["message"].as_str().unwrap().contains(&*missing), "{err}");
    // A command line that clap refuses: a JSON error too, with clap's exit code.
    let out = Command::new(BIN).args(["--log-format", "json", "node", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line: serde_json::Value = serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(line["level"], "ERROR");
    assert!(line["fields"]["message"].as_str().unwrap().contains("--bogus"), "{err}");
    // Without --control or a file that names it, status says what it needs.
    let out = Command::new(BIN).args(["status"]).env_remove("ASTRANET_CONTROL").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--control"));
}
