//! Real separate hosts: network namespaces joined by veth pairs, each running an
//! `astranet-node` process.
//!
//! ```text
//!   A 10.77.1.2 ──── 10.77.1.1 R 10.77.2.1 ──── 10.77.2.2 B
//! ```
//! R does not forward IP packets, so A and B reach R but not each other. Needs root
//! and `ip`; elsewhere each test prints why it is skipped and passes.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::hosts::{eventually, ok, Hosts, NODE};

/// A, R and B, wired A <-> R <-> B; or `None` after printing why the test is skipped.
fn setup(test: &str) -> Option<Hosts> {
    let built = Hosts::new(test, &["a", "r", "b"]).and_then(|hosts| {
        hosts.wire("a", "r", "10.77.1")?;
        hosts.wire("b", "r", "10.77.2")?;
        hosts.exec("r", &["sysctl", "-qw", "net.ipv4.ip_forward=0"])?;
        Ok(hosts)
    });
    match built {
        Ok(h) => Some(h),
        Err(why) => {
            eprintln!("SKIPPED {test}: network namespaces unavailable here ({why})");
            None
        }
    }
}

#[test]
fn relayed_by_name_then_gone_with_its_host() {
    let Some(mut hosts) = setup("rel") else { return };
    hosts.spawn("r", &["--listen", "0.0.0.0:7000", "--role", "router"]);
    std::thread::sleep(Duration::from_millis(300));
    let b = hosts.spawn("b", &["--join", "10.77.2.1:7000", "--listen", "0.0.0.0:7100", "--serve-echo", "db"]);
    // A cannot reach B's advertised address (10.77.2.2): the stream stays on the relay.
    let out = eventually(&hosts, "a", &["--join", "10.77.1.1:7000", "--dial", "db", "--message", "across"]);
    assert!(out.contains("echoed across"), "{out}");
    let out = ok(&hosts.run("a", &["--join", "10.77.1.1:7000", "--services", "--wait", "1"]));
    assert!(out.contains("db at") && out.contains("Relayed"), "{out}");

    // Killing B's process withdraws "db" everywhere within the keep-alive bound.
    let watcher = std::thread::spawn({
        let ns = hosts.ns("a");
        move || {
            Command::new("timeout")
                .args([
                    "30",
                    "ip",
                    "netns",
                    "exec",
                    &ns,
                    NODE,
                    "probe",
                    "--join",
                    "10.77.1.1:7000",
                    "--wait-gone",
                    "db",
                ])
                .args(["--wait", "15"])
                .stdout(Stdio::null())
                .status()
                .expect("runs")
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    hosts.kill(b);
    assert!(watcher.join().unwrap().success(), "db was withdrawn after its host died");
}

#[test]
fn a_direct_route_makes_new_streams_go_direct() {
    let Some(mut hosts) = setup("dir") else { return };
    // Give A a route to B's address through a third wire, A <-> B.
    let direct = hosts.wire("a", "b", "10.77.3").and_then(|_| {
        hosts.exec("a", &["ip", "route", "add", "10.77.2.0/24", "via", "10.77.3.1"])?;
        hosts.exec("b", &["ip", "route", "add", "10.77.1.0/24", "via", "10.77.3.2"])
    });
    if let Err(why) = direct {
        eprintln!("SKIPPED a_direct_route_makes_new_streams_go_direct: {why}");
        return;
    }
    hosts.spawn("r", &["--listen", "0.0.0.0:7000", "--role", "router"]);
    std::thread::sleep(Duration::from_millis(300));
    hosts.spawn("b", &["--join", "10.77.2.1:7000", "--listen", "0.0.0.0:7100", "--serve-echo", "db"]);
    std::thread::sleep(Duration::from_millis(500));
    // A learns B's address through R, joins it, and lists "db" as direct.
    let out = eventually(&hosts, "a", &["--join", "10.77.1.1:7000", "--services", "--wait", "3"]);
    assert!(out.contains("Direct"), "{out}");
    let out = ok(&hosts.run("a", &["--join", "10.77.1.1:7000", "--dial", "db", "--message", "direct"]));
    assert!(out.contains("echoed direct"), "{out}");
}

#[test]
fn join_links_every_address_of_a_name_and_follows_new_ones() {
    let Some(mut hosts) = setup("dns") else { return };
    // R answers on three addresses of A's wire; "router.test" names two, then three.
    let extra = ["10.77.1.3/24", "10.77.1.4/24"]
        .iter()
        .try_for_each(|ip| hosts.exec("r", &["ip", "addr", "add", ip, "dev", &format!("{}ra", hosts.prefix)]));
    if let Err(why) = extra.and_then(|_| hosts.hosts_file("a", "router.test", &["10.77.1.1", "10.77.1.3"])) {
        eprintln!("SKIPPED join_links_every_address_of_a_name_and_follows_new_ones: {why}");
        return;
    }
    hosts.spawn("r", &["--listen", "0.0.0.0:7000", "--role", "router"]);
    std::thread::sleep(Duration::from_millis(300));
    let out = ok(&hosts.run("a", &["--join", "router.test:7000", "--stats", "--wait", "0.5"]));
    assert!(out.contains("links 2"), "one link per address: {out}");

    // A third address appears while A runs: the next resolution joins it.
    let later = std::thread::spawn({
        let ns = hosts.ns("a");
        move || {
            Command::new("timeout")
                .args(["30", "ip", "netns", "exec", &ns, NODE, "probe", "--join", "router.test:7000"])
                .args(["--resolve-interval", "0.5", "--stats", "--wait", "3"])
                .output()
                .expect("runs")
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    hosts.hosts_file("a", "router.test", &["10.77.1.1", "10.77.1.3", "10.77.1.4"]).unwrap();
    let out = ok(&later.join().unwrap());
    assert!(out.contains("links 3"), "the new address was joined: {out}");
}

/// The operators' path across hosts: a web server on B published with `expose`, the
/// HTTP gateway on A, the router between them; A reaches B only through the router.
#[test]
fn a_gateway_reaches_a_service_exposed_beyond_the_router() {
    let Some(mut hosts) = setup("gw") else { return };
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED a_gateway_reaches_a_service_exposed_beyond_the_router: no curl here");
        return;
    }
    hosts.spawn("r", &["--listen", "0.0.0.0:7000", "--role", "router"]);
    std::thread::sleep(Duration::from_millis(300));
    let dir = std::env::temp_dir().join(format!("astranet-gw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), "served on B\n").unwrap();
    let dir_arg = dir.to_str().unwrap().to_string();
    hosts.spawn_program("b", &["python3", "-m", "http.server", "8000", "--bind", "127.0.0.1", "--directory", &dir_arg]);
    hosts.spawn_program("b", &[NODE, "expose", "web", "--to", "127.0.0.1:8000", "--join", "10.77.2.1:7000"]);
    hosts.spawn_program("a", &[NODE, "gateway", "--http", "127.0.0.1:8081", "--join", "10.77.1.1:7000"]);
    let started = Instant::now();
    let body = loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &hosts.ns("a"), "curl", "-sf", "-H", "Host: web"])
            .arg("http://127.0.0.1:8081/hello.txt")
            .output()
            .expect("curl runs");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the gateway never reached web");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(body, "served on B\n");
    let out = Command::new("ip")
        .args(["netns", "exec", &hosts.ns("a"), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", "Host: nobody", "http://127.0.0.1:8081/"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "502");
    let _ = std::fs::remove_dir_all(dir);
}

/// TLS across hosts: the router, a service host and a client each with a certificate of
/// one mesh CA (made by `astranet keys`); a node without TLS does not get in.
#[test]
fn a_tls_mesh_across_hosts() {
    let Some(mut hosts) = setup("tls") else { return };
    let dir = std::env::temp_dir().join(format!("astranet-netns-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = dir.to_str().unwrap().to_string();
    let keygen = |args: &[&str]| assert!(Command::new(NODE).arg("keys").args(args).status().unwrap().success());
    keygen(&["ca", "--out", &keys]);
    for name in ["r", "a", "b"] {
        keygen(&["node", name, "--ca", &keys, "--out", &keys]);
    }
    let tls = |name: &str| -> Vec<String> {
        vec![
            "--tls-ca".into(),
            format!("{keys}/ca.pem"),
            "--tls-cert".into(),
            format!("{keys}/{name}.pem"),
            "--tls-key".into(),
            format!("{keys}/{name}.key"),
        ]
    };
    let with =
        |base: &[&str], name: &str| -> Vec<String> { base.iter().map(|s| s.to_string()).chain(tls(name)).collect() };
    let args = with(&["--listen", "0.0.0.0:7000", "--role", "router"], "r");
    hosts.spawn("r", &args.iter().map(String::as_str).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(300));
    let args = with(&["--join", "10.77.2.1:7000", "--serve-echo", "db"], "b");
    hosts.spawn("b", &args.iter().map(String::as_str).collect::<Vec<_>>());
    let args = with(&["--join", "10.77.1.1:7000", "--dial", "db", "--message", "sealed"], "a");
    let out = eventually(&hosts, "a", &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("echoed sealed"), "{out}");
    let plain = hosts.run("a", &["--join", "10.77.1.1:7000", "--dial", "db", "--wait", "2"]);
    assert!(!plain.status.success(), "a node without TLS reached the mesh");
    let _ = std::fs::remove_dir_all(dir);
}
