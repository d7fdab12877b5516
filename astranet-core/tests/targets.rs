//! Every row of the shared target table (`tests/targets.tsv`, which the C, Python and
//! Go suites read too): what dial and bind make of each text.

use astranet::{Addr, Error, Node, Target};
use std::time::Duration;

struct Row {
    line: usize,
    op: String,
    input: String,
    expect: String,
}

/// The table's escapes: `\\`, `\t`, `\n`, `\xHH`.
fn unescape(s: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
            }
            other => panic!("unknown escape {other:?} in {s:?}"),
        }
    }
    String::from_utf8(out).unwrap()
}

fn rows() -> Vec<Row> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/targets.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<Row> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.is_empty())
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 4, "line {}: {l:?}", i + 1);
            let repeat = if cols[2].is_empty() { 1 } else { cols[2].parse().unwrap() };
            Row { line: i + 1, op: cols[0].into(), input: unescape(cols[1]).repeat(repeat), expect: cols[3].into() }
        })
        .collect();
    assert!(rows.len() > 30, "the table is read whole");
    rows
}

fn short(s: &str) -> String {
    format!("{:?}", s.chars().take(40).collect::<String>())
}

#[test]
fn dial_texts_parse_as_the_table_says() {
    for row in rows().iter().filter(|r| r.op == "dial") {
        let what = format!("line {}: {}", row.line, short(&row.input));
        let parsed = row.input.parse::<Target>();
        let words: Vec<&str> = row.expect.split(' ').collect();
        match words[..] {
            ["invalid"] => {
                let err = parsed.expect_err(&what);
                assert!(matches!(err, Error::InvalidTarget { .. }), "{what}: {err}");
                assert!(err.to_string().len() < 300, "{what}: the message quotes a bounded prefix");
            }
            ["addr", addr] => assert_eq!(parsed.unwrap().addr(), Some(addr.parse::<Addr>().unwrap()), "{what}"),
            ["name", name] => assert_eq!(parsed.unwrap().service(), Some((name, None)), "{what}"),
            ["name", name, port] => {
                let port = port.parse::<u32>().unwrap().into();
                assert_eq!(parsed.unwrap().service(), Some((name, Some(port))), "{what}")
            }
            _ => panic!("{what}: unknown expectation {:?}", row.expect),
        }
    }
}

#[tokio::test]
async fn invalid_dial_texts_fail_at_once_on_a_node() {
    let node = Node::new();
    for row in rows().iter().filter(|r| r.op == "dial" && r.expect == "invalid") {
        let what = format!("line {}: {}", row.line, short(&row.input));
        let started = std::time::Instant::now();
        let err = node.dial_timeout(row.input.as_str(), Duration::from_secs(30)).await.expect_err(&what);
        assert!(matches!(err, Error::InvalidTarget { .. }), "{what}: {err}");
        assert!(started.elapsed() < Duration::from_secs(1), "{what}: refused at once");
    }
    // Names made by the constructor are checked when dialed.
    let err = node.dial(Target::name("a b")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidTarget { .. }), "{err}");
}

#[tokio::test]
async fn bind_texts_bind_as_the_table_says() {
    for row in rows().iter().filter(|r| r.op == "bind") {
        let what = format!("line {}: {}", row.line, short(&row.input));
        let node = Node::new();
        let bound = node.bind(&row.input);
        let words: Vec<&str> = row.expect.split(' ').collect();
        match words[..] {
            ["invalid"] => {
                let err = bound.expect_err(&what);
                assert!(matches!(err, Error::InvalidTarget { .. }), "{what}: {err}");
                assert!(err.to_string().len() < 300, "{what}: the message quotes a bounded prefix");
            }
            ["bind", name, port] => {
                let listener = bound.expect(&what);
                let port: u32 = port.parse().unwrap();
                if port != 0 {
                    assert_eq!(listener.local_addr().port.0, port, "{what}");
                }
                let names: Vec<String> = node.services().into_iter().map(|s| s.name).collect();
                match name {
                    "-" => assert!(names.is_empty(), "{what}: {names:?}"),
                    name => assert_eq!(names, [name], "{what}"),
                }
            }
            _ => panic!("{what}: unknown expectation {:?}", row.expect),
        }
        node.close();
    }
}

#[tokio::test]
async fn the_environment_suffix_counts_towards_the_name_limit() {
    let node = Node::builder().env(["prod"]).build();
    let err = node.bind(&"a".repeat(255)).unwrap_err();
    assert!(matches!(err, Error::InvalidTarget { .. }), "{err}");
    let err = node.dial("a".repeat(255)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidTarget { .. }), "{err}");
}
