//! Redis Cluster helpers shared by the test suites: key slots (CRC16 with
//! hash tags, as Redis computes them), parsing of `CLUSTER NODES`, and
//! short-timeout probes of one node.

use std::time::Duration;

/// Number of hash slots.
pub const SLOTS: u16 = 16384;

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`, honouring `{hash tags}` as Redis does: the part
/// between the first `{` and the first `}` after it, if not empty.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// One line of CLUSTER NODES.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub master: bool,
    pub master_id: Option<String>,
    pub failed: bool,
    pub slots: Vec<(u16, u16)>,
}

/// Parses CLUSTER NODES.
pub fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    let mut nodes = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let addr = f[1].split(['@', ',']).next().unwrap_or("");
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let flags: Vec<&str> = f[2].split(',').collect();
        let slots = f[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| {
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect();
        nodes.push(NodeInfo {
            id: f[0].to_string(),
            port,
            master: flags.contains(&"master"),
            master_id: (f[3] != "-").then(|| f[3].to_string()),
            failed: flags
                .iter()
                .any(|fl| matches!(*fl, "fail" | "fail?" | "handshake" | "noaddr")),
            slots,
        });
    }
    nodes
}

/// A connection to one node with short timeouts, or `None` if it does not
/// answer (a killed or paused node).
pub fn try_conn(port: u16) -> Option<redis::Connection> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let conn = c
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    Some(conn)
}

/// A `field:value` line of `INFO section` on one node, or of `CLUSTER INFO`
/// when `section` is `"cluster"`.
pub fn info_field(port: u16, section: &str, field: &str) -> Option<String> {
    let mut c = try_conn(port)?;
    let text: String = if section == "cluster" {
        redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()?
    } else {
        redis::cmd("INFO").arg(section).query(&mut c).ok()?
    };
    text.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}
