//! The tamper-evident chain over audit lines, and its verification (pure: no I/O).
//!
//! A line is a JSON object whose last member is `"chain":"<64 hex>"`. Its chain value is
//! `HMAC-SHA256(key, prev + "\n" + body)` (or `SHA-256(prev + "\n" + body)` without a vault),
//! where `body` is the line up to (not including) `,"chain":`, and `prev` is the chain value
//! of the line before it. The first line of every file is a `file.start` record whose
//! `detail.prevFile` names the last chain value of the previous file (`null` for the first
//! file), so a set of rotated files forms one chain. Every record carries `seq`, a counter
//! that continues across files, which lets verification say *what* broke: an edit, a
//! deletion or a reordering.

use hmac::Mac;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::secret::SecretKey;

/// The chain value of "nothing before": the seed of the very first file.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const MARKER: &str = ",\"chain\":\"";

/// How lines are chained.
pub enum ChainKey {
    /// HMAC-SHA256 under a key derived from the vault: only key holders can forge lines.
    Hmac(SecretKey),
    /// A plain SHA-256 chain: detects edits by people who do not recompute the chain.
    Sha256,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.algorithm())
    }
}

impl ChainKey {
    /// The name written into `file.start` records.
    pub fn algorithm(&self) -> &'static str {
        match self {
            ChainKey::Hmac(_) => "hmac-sha256",
            ChainKey::Sha256 => "sha256",
        }
    }

    /// The chain value of `body` following `prev`, as lowercase hex. (Many lines: use a
    /// [`Sealer`], which prepares the key once.)
    pub fn link(&self, prev: &str, body: &str) -> String {
        hex(&Sealer::new(self).link(prev, body))
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    push_hex(&mut s, b);
    s
}

fn push_hex(s: &mut String, b: &[u8]) {
    const H: &[u8; 16] = b"0123456789abcdef";
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
}

/// A [`ChainKey`] made ready for many lines: the HMAC key schedule (two SHA-256 blocks)
/// is computed once, not per line. What the writer seals with. Its state is as good as
/// the key for computing chain values: one lives in the audit writer for its whole life
/// (as the key itself does); it is not `Clone`, and its `Debug` names only the algorithm.
pub struct Sealer(Option<hmac::Hmac<Sha256>>);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "hmac-sha256"
        } else {
            "sha256"
        })
    }
}

impl Sealer {
    pub fn new(key: &ChainKey) -> Sealer {
        Sealer(match key {
            ChainKey::Hmac(k) => Some(
                <hmac::Hmac<Sha256> as Mac>::new_from_slice(&k.bytes()[..])
                    .expect("HMAC takes any key length"),
            ),
            ChainKey::Sha256 => None,
        })
    }

    /// What [`ChainKey::link`] computes, as bytes.
    fn link(&self, prev: &str, body: &str) -> [u8; 32] {
        match &self.0 {
            Some(m) => {
                let mut m = m.clone();
                m.update(prev.as_bytes());
                m.update(b"\n");
                m.update(body.as_bytes());
                m.finalize().into_bytes().into()
            }
            None => {
                let mut h = Sha256::new();
                h.update(prev.as_bytes());
                h.update(b"\n");
                h.update(body.as_bytes());
                h.finalize().into()
            }
        }
    }
}

/// The running state of a chain: what the next line links to, and its `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub prev: String,
    pub seq: u64,
}

impl Link {
    pub fn genesis() -> Link {
        Link {
            prev: GENESIS.to_string(),
            seq: 0,
        }
    }

    /// Seal a serialised record (a JSON object text) into a line with its chain value,
    /// ending in a newline. Advances the chain.
    pub fn seal(&mut self, key: &ChainKey, mut record: String) -> String {
        self.seal_at(&Sealer::new(key), &mut record, 0);
        record
    }

    /// [`Link::seal`] in place: `out[start..]` is the record (a JSON object text); its
    /// closing brace becomes the chain member and the line's newline. Advances the chain.
    pub fn seal_at(&mut self, sealer: &Sealer, out: &mut String, start: usize) {
        debug_assert!(out.ends_with('}') && out.is_char_boundary(start));
        out.pop();
        let value = sealer.link(&self.prev, &out[start..]);
        out.push_str(MARKER);
        let at = out.len();
        push_hex(out, &value);
        self.prev.clear();
        self.prev.push_str(&out[at..]);
        out.push_str("\"}\n");
        self.seq += 1;
    }
}

/// Split a line into (body, chain value). `None` if it does not end in a chain member.
pub fn split_line(line: &str) -> Option<(&str, &str)> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let at = line.rfind(MARKER)?;
    let value = line[at + MARKER.len()..].strip_suffix("\"}")?;
    (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some((&line[..at], value))
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// Index of the file in the verified set.
    pub file: usize,
    /// 1-based line number in that file.
    pub line: usize,
    pub message: String,
}

/// What a verified set contained.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    pub records: u64,
    pub algorithm: String,
    /// The last chain value: keep it elsewhere to detect a cut-off tail later.
    pub last: String,
    pub last_seq: Option<u64>,
}

/// Verify files in order (oldest first), each given as its lines. The first file's own
/// `prevFile` seeds the chain; later files must link to the end of the file before them.
pub fn verify(files: &[Vec<String>], key: &ChainKey) -> Result<Verified, Break> {
    let mut link: Option<Link> = None;
    let mut records = 0u64;
    let mut algorithm = String::new();
    for (f, lines) in files.iter().enumerate() {
        let brk = |line: usize, message: String| Break {
            file: f,
            line,
            message,
        };
        if lines.is_empty() {
            return Err(brk(
                0,
                "the file is empty (its file.start record is missing)".into(),
            ));
        }
        let parsed: Vec<Option<(Value, &str, &str)>> = lines
            .iter()
            .map(|l| {
                let (body, value) = split_line(l)?;
                let v: Value = serde_json::from_str(&format!("{body}}}")).ok()?;
                Some((v, body, value))
            })
            .collect();
        for (i, p) in parsed.iter().enumerate() {
            let n = i + 1;
            let Some((rec, body, value)) = p else {
                return Err(brk(
                    n,
                    "not an audit record (no chain value, or not JSON)".into(),
                ));
            };
            let seq = rec.get("seq").and_then(Value::as_u64);
            if i == 0 {
                if rec.get("event").and_then(Value::as_str) != Some("file.start") {
                    return Err(brk(
                        n,
                        "the first line is not a file.start record: lines were deleted from the start of the file".into(),
                    ));
                }
                let alg = rec
                    .pointer("/detail/chain")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if alg != key.algorithm() {
                    return Err(brk(
                        n,
                        format!(
                            "the file is chained with `{alg}`, but verification uses `{}`{}",
                            key.algorithm(),
                            if alg == "hmac-sha256" {
                                " (the vault key is needed to verify it)"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
                algorithm = alg.to_string();
                let prev_file = rec
                    .pointer("/detail/prevFile")
                    .and_then(Value::as_str)
                    .unwrap_or(GENESIS)
                    .to_string();
                match &link {
                    Some(l) if l.prev != prev_file => {
                        return Err(brk(
                            n,
                            "this file does not continue the file before it (its prevFile is not that file's last chain value): a file or its last lines are missing, or the files are out of order".into(),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        link = Some(Link {
                            prev: prev_file,
                            seq: seq.unwrap_or(0),
                        })
                    }
                }
            }
            let l = link.get_or_insert_with(Link::genesis);
            let expected = key.link(&l.prev, body);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                value.as_bytes(),
            )) {
                return Err(brk(n, explain(&parsed, l.seq, seq)));
            }
            if seq != Some(l.seq) {
                return Err(brk(
                    n,
                    format!(
                        "seq is {} where {} was expected",
                        seq.map_or("missing".into(), |s| s.to_string()),
                        l.seq
                    ),
                ));
            }
            l.prev = value.to_string();
            l.seq += 1;
            records += 1;
        }
    }
    let l = link.unwrap_or_else(Link::genesis);
    Ok(Verified {
        records,
        algorithm,
        last_seq: l.seq.checked_sub(1),
        last: l.prev,
    })
}

/// Name the likely cause of a chain mismatch at line `i`.
fn explain(parsed: &[Option<(Value, &str, &str)>], expected: u64, seq: Option<u64>) -> String {
    let seq_of = |p: &Option<(Value, &str, &str)>| {
        p.as_ref()
            .and_then(|(v, _, _)| v.get("seq").and_then(Value::as_u64))
    };
    match seq {
        Some(s) if s == expected => {
            "the record was changed (its chain value does not match its content)".into()
        }
        Some(s) => {
            if let Some(j) = parsed.iter().position(|p| seq_of(p) == Some(expected)) {
                format!(
                    "records are out of order: seq {s} where {expected} was expected ({expected} is on line {})",
                    j + 1
                )
            } else if s > expected {
                let missing = if s - expected == 1 {
                    format!("the record with seq {expected} is missing")
                } else {
                    format!("records with seq {expected} to {} are missing", s - 1)
                };
                format!("{missing}: deleted before this line")
            } else {
                format!("seq {s} where {expected} was expected: a record was repeated or reordered")
            }
        }
        None => "the record was changed (its seq is missing)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &ChainKey, start: &mut Link, prev_file: &str, n: usize) -> Vec<String> {
        let mut out = vec![start.seal(
            key,
            format!(
                r#"{{"seq":{},"event":"file.start","detail":{{"chain":"{}","prevFile":"{}"}}}}"#,
                start.seq,
                key.algorithm(),
                prev_file
            ),
        )];
        for i in 0..n {
            out.push(start.seal(
                key,
                format!(r#"{{"seq":{},"event":"x","n":{i}}}"#, start.seq),
            ));
        }
        out
    }

    fn key() -> ChainKey {
        ChainKey::Hmac(SecretKey::from_bytes([7; 32]))
    }

    #[test]
    fn sealing_in_place_with_a_prepared_key_writes_the_same_lines() {
        for k in [key(), ChainKey::Sha256] {
            let sealer = Sealer::new(&k);
            let (mut a, mut b) = (Link::genesis(), Link::genesis());
            let mut buf = String::from("left alone\n");
            let mut lines = Vec::new();
            for i in 0..5 {
                let rec = format!(r#"{{"seq":{i},"event":"x","s":"é\"{i}"}}"#);
                lines.push(a.seal(&k, rec.clone()));
                let start = buf.len();
                buf.push_str(&rec);
                b.seal_at(&sealer, &mut buf, start);
                assert_eq!(a, b);
            }
            assert_eq!(buf, format!("left alone\n{}", lines.concat()));
            // Each line links to the one before: HMAC-SHA256(key, prev + "\n" + body) (or
            // SHA-256), computed here from scratch, not through `Sealer`.
            let mut prev = GENESIS.to_string();
            for l in &lines {
                let (body, value) = split_line(l).unwrap();
                let text = format!("{prev}\n{body}");
                let want: [u8; 32] = match &k {
                    ChainKey::Hmac(key) => {
                        <hmac::Hmac<Sha256> as Mac>::new_from_slice(&key.bytes()[..])
                            .unwrap()
                            .chain_update(text.as_bytes())
                            .finalize()
                            .into_bytes()
                            .into()
                    }
                    ChainKey::Sha256 => Sha256::digest(text.as_bytes()).into(),
                };
                assert_eq!(hex(&want), value);
                assert_eq!(k.link(&prev, body), value);
                prev = value.to_string();
            }
            assert_eq!(b.prev, prev);
        }
        assert_eq!(format!("{:?}", Sealer::new(&key())), "hmac-sha256");
    }

    #[test]
    fn an_intact_chain_verifies_across_files() {
        let k = key();
        let mut l = Link::genesis();
        let a = file(&k, &mut l, GENESIS, 3);
        let prev = l.prev.clone();
        let b = file(&k, &mut l, &prev, 2);
        let v = verify(&[a, b], &k).unwrap();
        assert_eq!(v.records, 7);
        assert_eq!(v.last_seq, Some(6));
    }

    #[test]
    fn edits_deletions_and_swaps_are_named() {
        let k = key();
        let mut l = Link::genesis();
        let a = file(&k, &mut l, GENESIS, 5);
        let mut edited = a.clone();
        edited[2] = edited[2].replace("\"n\":1", "\"n\":9");
        let e = verify(&[edited], &k).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("changed"), "{}", e.message);

        let mut deleted = a.clone();
        deleted.remove(2);
        let e = verify(&[deleted], &k).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("missing"), "{}", e.message);

        let mut swapped = a.clone();
        swapped.swap(2, 3);
        let e = verify(&[swapped], &k).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("out of order"), "{}", e.message);

        let mut headless = a.clone();
        headless.remove(0);
        assert!(verify(&[headless], &k).is_err());
    }

    #[test]
    fn the_wrong_key_or_algorithm_fails() {
        let k = key();
        let mut l = Link::genesis();
        let a = file(&k, &mut l, GENESIS, 1);
        let other = ChainKey::Hmac(SecretKey::from_bytes([8; 32]));
        assert!(verify(std::slice::from_ref(&a), &other).is_err());
        let e = verify(&[a], &ChainKey::Sha256).unwrap_err();
        assert!(e.message.contains("vault key"), "{}", e.message);
    }

    #[test]
    fn a_missing_middle_file_is_detected() {
        let k = ChainKey::Sha256;
        let mut l = Link::genesis();
        let a = file(&k, &mut l, GENESIS, 1);
        let p = l.prev.clone();
        let _b = file(&k, &mut l, &p, 1);
        let p = l.prev.clone();
        let c = file(&k, &mut l, &p, 1);
        let e = verify(&[a, c], &k).unwrap_err();
        assert_eq!((e.file, e.line), (1, 1));
    }

    #[test]
    fn split_line_requires_the_exact_suffix() {
        assert!(split_line(r#"{"a":1,"chain":"00"}"#).is_none());
        let good = format!(r#"{{"a":1,"chain":"{GENESIS}"}}"#);
        assert_eq!(split_line(&good), Some((r#"{"a":1"#, GENESIS)));
        assert!(split_line(&format!("{good}x")).is_none());
    }
}
