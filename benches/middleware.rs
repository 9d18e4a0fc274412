//! The cost Fentaris adds per call besides the upstream: a chain of three no-op middlewares
//! (target: under 5 µs), and sealing one audit record into the HMAC chain.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use fentaris::audit::chain::{ChainKey, Link, Sealer};
use fentaris::audit::{AuditLog, Record};
use fentaris::middleware::{Ctx, Next, Registry, TargetKind};
use serde_json::json;

fn middleware(c: &mut Criterion) {
    let config: fentaris::config::Config = serde_json::from_value(json!({
        "groups": [{ "id": "g", "users": ["alice"] }]
    }))
    .unwrap();
    let (engine, _) = fentaris::policy::Engine::compile(&config);
    let subject = Arc::new(engine.subject("alice"));
    let audit = Arc::new(AuditLog::off());
    let mut reg = Registry::default();
    reg.add_global(|c: Ctx, n: Next| async move { n.run(c).await });
    reg.add_global(|c: Ctx, n: Next| async move { n.run(c).await });
    reg.add_scoped(
        "github",
        TargetKind::Tool,
        "create_*",
        |c: Ctx, n: Next| async move { n.run(c).await },
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let args = json!({ "title": "a title", "body": "text" });
    let mut g = c.benchmark_group("middleware");
    g.bench_function("3 no-op steps (chain lookup, context, run)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let chain = reg.chain_for("github", Some(TargetKind::Tool), "create_issue");
                let ctx = Ctx::new(
                    subject.clone(),
                    "github",
                    "tool:call",
                    "create_issue",
                    args.clone(),
                    audit.clone(),
                );
                Next::new(chain, |_| Box::pin(async { Ok(json!({})) }))
                    .run(ctx)
                    .await
            })
        })
    });
    g.bench_function("no middleware (baseline: block_on only)", |b| {
        b.iter(|| rt.block_on(async { Ok::<_, ()>(json!({})) }))
    });
    g.finish();
}

fn audit_record(c: &mut Criterion) {
    let key = ChainKey::Hmac(fentaris::secret::SecretKey::from_bytes([7; 32]));
    let mut link = Link::genesis();
    let mut r = Record::new("request");
    r.request_id = Some("5f0c3be1a2d94e17".into());
    r.server = Some("github".into());
    r.method = Some("tools/call".into());
    r.operation = Some("tool:call".into());
    r.target = Some("create_issue".into());
    r.decision = Some("allow");
    r.outcome = Some("ok");
    r.args = Some(fentaris::audit::args_shape_json(
        &json!({ "title": "x", "labels": ["a"] }),
    ));
    // As the writer does it: the key schedule once, the record written into its buffer
    // with its seq and sealed in place there.
    let sealer = Sealer::new(&key);
    let mut buf = String::with_capacity(1 << 16);
    let tags = std::collections::BTreeMap::new();
    c.bench_function("audit: serialise and seal one request record", |b| {
        b.iter(|| {
            buf.clear();
            r.write_line(&mut buf, Some(link.seq), &tags);
            link.seal_at(&sealer, &mut buf, 0);
            buf.len()
        })
    });
}

criterion_group!(benches, middleware, audit_record);
criterion_main!(benches);
