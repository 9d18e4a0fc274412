//! The floor of Fentaris' HTTP stack, for benchmarks: a reverse proxy made of what every
//! proxied call through Fentaris also goes through (hyper's HTTP/1 server in front, hyper's
//! HTTP/1 client behind, one current-thread tokio runtime), and nothing else: no JSON, no
//! authentication, policy, audit or metrics. Each client connection gets its own kept-alive
//! upstream connection, polled by the client connection's task (no hand-off between tasks),
//! and bodies pass through as they arrive. `bench/compare.sh` measures it as the path
//! `hyper-floor`: what Fentaris' CPU per call and added latency could reach on this stack.
//!
//! ```text
//! bare_proxy --listen 127.0.0.1:9002 --upstream 127.0.0.1:9001
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

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
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(connection(tcp, upstream));
        }
    });
}

/// One client connection and its upstream connection, both polled by this task.
async fn connection(tcp: tokio::net::TcpStream, upstream: SocketAddr) {
    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let Ok((send, up_conn)) = client::handshake::<_, Incoming>(TokioIo::new(up)).await else {
        return;
    };
    let send = std::sync::Arc::new(tokio::sync::Mutex::new(send));
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let send = send.clone();
        async move {
            let mut send = send.lock().await;
            let resp = match send.send_request(req).await {
                Ok(r) => r.map(http_body_util::Either::Left),
                Err(_) => {
                    let mut r =
                        Response::new(http_body_util::Either::Right(http_body_util::Empty::new()));
                    *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                    r
                }
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let front = server::Builder::new().serve_connection(TokioIo::new(tcp), svc);
    // The upstream connection is polled alongside the client's: one task, no hand-off.
    tokio::select! {
        _ = front => {}
        _ = up_conn => {}
    }
}
