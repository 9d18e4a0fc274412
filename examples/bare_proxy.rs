//! The floor of Fentaris' HTTP stack, for benchmarks: a reverse proxy made of what every
//! proxied call through Fentaris also goes through (hyper's HTTP/1 server in front, hyper's
//! HTTP/1 client behind, one current-thread tokio runtime, mimalloc), and nothing else of
//! Fentaris' work: no JSON, authentication, policy, audit or metrics. Each client connection
//! gets its own kept-alive upstream connection, polled by the client connection's task (no
//! hand-off between tasks, as Fentaris' own upstream connections), and bodies pass through as
//! they arrive. `bench/compare.sh` measures it as the path `hyper-floor`: what Fentaris' CPU
//! per call and added latency could reach on this stack.
//!
//! Requests go upstream as HTTP/1.1 with the upstream's `Host` and without the client's
//! hop-by-hop headers. When the upstream connection fails or closes, the client connection
//! stays up and its requests get `502 Bad Gateway`.
//!
//! ```text
//! bare_proxy --listen 127.0.0.1:9002 --upstream 127.0.0.1:9001
//! ```

use std::convert::Infallible;
use std::future::Future as _;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

/// The same allocator as Fentaris (`src/main.rs`), so the floor is measured on the same stack.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn usage() -> ! {
    eprintln!("usage: bare_proxy --listen ADDR --upstream HOST:PORT");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut upstream) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().and_then(|s| s.parse::<SocketAddr>().ok()),
            "--upstream" => upstream = args.next().and_then(|s| s.parse::<SocketAddr>().ok()),
            _ => usage(),
        }
    }
    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        usage()
    };
    let host = header::HeaderValue::from_str(&upstream.to_string()).unwrap_or_else(|_| usage());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("bare_proxy: cannot start the runtime: {e}");
            std::process::exit(1)
        });
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| {
                eprintln!("bare_proxy: cannot listen on {listen}: {e}");
                std::process::exit(1)
            });
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(connection(tcp, upstream, host.clone()));
                }
                // Out of descriptors, say: wait instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    });
}

type UpConn = client::Connection<TokioIo<tokio::net::TcpStream>, Incoming>;

/// The upstream connection, or `None` when it could not be opened.
async fn connect(upstream: SocketAddr) -> Option<(client::SendRequest<Incoming>, UpConn)> {
    let up = tokio::net::TcpStream::connect(upstream).await.ok()?;
    let _ = up.set_nodelay(true);
    client::handshake(TokioIo::new(up)).await.ok()
}

/// Hop-by-hop headers (RFC 9110 7.6.1), not forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// One client connection and its upstream connection, both polled by this task.
async fn connection(tcp: tokio::net::TcpStream, upstream: SocketAddr, host: header::HeaderValue) {
    let (send, mut up_conn) = match connect(upstream).await {
        Some((s, c)) => (Some(s), Some(Box::pin(c))),
        None => (None, None),
    };
    let send = Arc::new(tokio::sync::Mutex::new(send));
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let (send, host) = (send.clone(), host.clone());
        async move {
            *req.version_mut() = hyper::Version::HTTP_11;
            let h = req.headers_mut();
            for name in HOP_BY_HOP {
                h.remove(name);
            }
            h.insert(header::HOST, host);
            let mut send = send.lock().await;
            let resp = match send.as_mut() {
                Some(s) => s.send_request(req).await.ok(),
                None => None,
            };
            Ok::<_, Infallible>(match resp {
                Some(r) => r.map(Either::Left),
                None => {
                    let mut r = Response::new(Either::Right(Empty::<Bytes>::new()));
                    *r.status_mut() = StatusCode::BAD_GATEWAY;
                    r
                }
            })
        }
    });
    let front = server::Builder::new().serve_connection(TokioIo::new(tcp), svc);
    let mut front = std::pin::pin!(front);
    // The upstream connection is polled alongside the client's: one task, no hand-off. When it
    // ends (closed by the upstream), the client's connection goes on; its requests get 502.
    std::future::poll_fn(|cx| {
        if let Some(c) = up_conn.as_mut()
            && c.as_mut().poll(cx).is_ready()
        {
            up_conn = None;
        }
        front.as_mut().poll(cx).map(|_| ())
    })
    .await;
}
