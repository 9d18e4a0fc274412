//! Stdio upstreams: the child (sandboxed, in its own process group, scrubbed environment,
//! stderr to our log) and newline-delimited JSON-RPC over its pipes, read with a cap.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::{Conn, Replier, Shared};

pub(super) fn spawn_stdio(
    server: &str,
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&PathBuf>,
    shared: &std::sync::Arc<Shared>,
) -> Result<Conn, String> {
    crate::harden::check_child_paths(command, cwd.map(PathBuf::as_path))
        .map_err(|e| format!("cannot start `{command}`: {e}"))?;
    let mut cmd = tokio::process::Command::new(command);
    cmd.args(args)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    #[cfg(unix)]
    {
        // Dies with Fentaris (even on SIGKILL); cannot touch its folder, keys or audit log,
        // nor signal or ptrace it (harden.rs: mount namespace + Landlock).
        let sandbox = crate::harden::child_sandbox();
        // SAFETY: the closure only makes syscalls (prctl, getppid, unshare, mount, Landlock)
        // on data prepared in the parent; nothing it does needs a lock another thread could
        // hold at fork.
        unsafe {
            cmd.pre_exec(move || sandbox.apply());
        }
    }
    let mut wrap = process_wrap::tokio::CommandWrap::from(cmd);
    #[cfg(unix)]
    wrap.wrap(process_wrap::tokio::ProcessGroup::leader());
    wrap.wrap(process_wrap::tokio::KillOnDrop);
    let mut child = wrap
        .spawn()
        .map_err(|e| format!("cannot start `{command}`: {e}"))?;
    let stdin = child.stdin().take().ok_or("no stdin")?;
    let stdout = child.stdout().take().ok_or("no stdout")?;
    let stderr = child.stderr().take();
    let tx = wire_lines(server, stdin, stdout, shared);
    // Stderr: into our log, with the server name, at a bounded rate.
    if let Some(err) = stderr {
        let name = server.to_string();
        tokio::spawn(async move {
            // Split on bytes: a line that is not UTF-8 must not end the forwarding (the
            // child would then block on a full stderr pipe).
            let mut lines = BufReader::new(err).split(b'\n');
            let mut window = tokio::time::Instant::now();
            let mut count = 0u32;
            while let Ok(Some(line)) = lines.next_segment().await {
                let line = String::from_utf8_lossy(&line);
                if window.elapsed() > Duration::from_secs(10) {
                    window = tokio::time::Instant::now();
                    count = 0;
                }
                count += 1;
                if count <= 50 {
                    let line: String = line.chars().take(500).collect();
                    tracing::info!(server = %name, "upstream stderr: {}", crate::diagnostics::escape_control(&line));
                } else if count == 51 {
                    tracing::info!(server = %name, "upstream stderr: (more lines suppressed for 10s)");
                }
            }
        });
    }
    Ok(Conn::Stdio {
        tx,
        child: tokio::sync::Mutex::new(Some(child)),
    })
}

/// Connect a newline-delimited JSON-RPC stream (a child's stdin and stdout, or an in-memory
/// pipe in tests) to `shared`: returns the sender of lines to write.
pub(super) fn wire_lines<W, R>(
    server: &str,
    stdin: W,
    stdout: R,
    shared: &std::sync::Arc<Shared>,
) -> mpsc::UnboundedSender<String>
where
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let reply_line = tx.clone();
    let replier: Replier = std::sync::Arc::new(move |v: Value| {
        let _ = reply_line.send(v.to_string());
    });
    *shared.replier.lock() = Some(replier);
    // Writer: every message queued so far in one write (one syscall per burst, not two per
    // message).
    tokio::spawn(async move {
        let mut stdin = stdin;
        let mut buf: Vec<u8> = Vec::with_capacity(8 << 10);
        while let Some(line) = rx.recv().await {
            buf.clear();
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            while buf.len() < (256 << 10)
                && let Ok(more) = rx.try_recv()
            {
                buf.extend_from_slice(more.as_bytes());
                buf.push(b'\n');
            }
            if stdin.write_all(&buf).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
            if buf.capacity() > (1 << 20) {
                buf = Vec::with_capacity(8 << 10);
            }
        }
    });
    // Reader: dispatch in wire order; replies go back through the writer.
    let sh = shared.clone();
    let reply_tx = tx.clone();
    let name = server.to_string();
    tokio::spawn(async move {
        let mut reader = BufReader::with_capacity(64 << 10, stdout);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            buf.clear();
            match read_line_capped(&mut reader, &mut buf, sh.max_message).await {
                Ok(Line::Complete) => {}
                Ok(Line::Eof) | Err(_) => break,
                Ok(Line::TooLong) => {
                    // Never buffered past the cap. The rest of the stream cannot be trusted to
                    // be framed: the connection is treated as broken (and restarted).
                    let why = format!(
                        "upstream `{name}` sent a message over {} bytes (limits.maxUpstreamMessageBytes); its connection is restarted",
                        sh.max_message
                    );
                    tracing::warn!(server = %name, "{why}");
                    sh.fail_all(&why);
                    // Dropping stdout makes the child's further writes fail; it is killed
                    // when its connection is dropped.
                    return;
                }
            }
            if buf.trim_ascii().is_empty() {
                continue;
            }
            let line = buf.trim_ascii();
            match sh.dispatch(line, None) {
                Ok(reply) => {
                    if let Some(reply) = reply {
                        let _ = reply_tx.send(reply.to_string());
                    }
                }
                Err(_) => {
                    sh.dropped.inc();
                    tracing::warn!(server = %name, "upstream wrote a line that is not JSON-RPC to stdout");
                }
            }
        }
        sh.fail_all(&format!("upstream `{name}` exited or closed its output"));
    });
    tx
}

/// How reading one line ended.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Complete,
    Eof,
    /// Longer than the cap: discarded up to the cap, the reader is mid-line.
    TooLong,
}

/// Read one `\n`-terminated line into `buf` (without the newline), never holding more than
/// `max` bytes of it.
async fn read_line_capped<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > max {
            let n = avail.len();
            r.consume(n);
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Line::Complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], cap: usize) -> Vec<(Line, String)> {
        // A 4-byte buffer: lines and the cap straddle reads.
        let mut r = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            let l = read_line_capped(&mut r, &mut buf, cap).await.unwrap();
            let done = l == Line::Eof;
            out.push((l, String::from_utf8(buf).unwrap()));
            if done {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_are_read_up_to_the_cap_and_never_past_it() {
        let got = lines(b"{\"a\":1}\nabcdefghijkl\nxyz", 10).await;
        assert_eq!(got[0], (Line::Complete, "{\"a\":1}".into()));
        // Reported as soon as it passes the cap, with no more than the cap held (the proxy
        // stops reading there: the stream is no longer framed).
        assert_eq!(got[1].0, Line::TooLong);
        assert!(got[1].1.len() <= 10, "{got:?}");
        assert_eq!(got.last().unwrap().0, Line::Eof);
        // Exactly the cap is accepted.
        let got = lines(b"0123456789\n", 10).await;
        assert_eq!(got[0], (Line::Complete, "0123456789".into()));
        let got = lines(b"01234567890\n", 10).await;
        assert_eq!(got[0].0, Line::TooLong);
    }
}
