//! Vault benchmarks: opening a vault with a key file, and verifying a presented API key
//! against 10,000 stored keys. Targets (release): open < 50 ms, verify < 2 µs median.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use fentaris::secret::Secret;
use fentaris::vault::{KeyLookup, OpenOptions, Vault, generate_api_key};

fn setup(
    keys: usize,
    entries: usize,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    KeyLookup,
    Vec<Secret>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(".fentaris/credentials.enc.json");
    let lookup = KeyLookup::in_dir(tmp.path().join("keys"));
    let mut generated = Vec::new();
    Vault::modify(&path, &lookup, Duration::from_secs(5), |d| {
        for i in 0..entries {
            d.set(
                &format!("upstream-{i}.token"),
                &Secret::new(format!("value-{i}-0123456789abcdef")),
            )?;
        }
        for i in 0..keys {
            let (id, key) = generate_api_key();
            d.add_api_key(&format!("user-{}", i % 500), &key, Some(id), None, None)?;
            generated.push(key);
        }
        Ok(())
    })
    .unwrap();
    (tmp, path, lookup, generated)
}

fn bench(c: &mut Criterion) {
    let (_tmp, path, lookup, keys) = setup(10_000, 50);
    let mut g = c.benchmark_group("vault");
    g.bench_function("open_with_key_file_10k_keys_50_entries", |b| {
        b.iter(|| black_box(Vault::open(&path, &lookup, OpenOptions::default()).unwrap()))
    });
    let index = Vault::open(&path, &lookup, OpenOptions::default())
        .unwrap()
        .api_key_index();
    let now = SystemTime::now();
    let valid = keys[7_777].expose().to_string();
    assert!(index.verify(&valid, now).is_some());
    g.bench_function("verify_api_key_of_10k", |b| {
        b.iter(|| black_box(index.verify(black_box(&valid), now)))
    });
    let unknown = format!("{valid}x");
    g.bench_function("reject_unknown_api_key_of_10k", |b| {
        b.iter(|| black_box(index.verify(black_box(&unknown), now)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
