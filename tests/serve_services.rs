//! End-to-end tests of Services on `corral serve`, driven with the real `kubectl`: a
//! Deployment behind a ClusterIP Service answers through the virtual IP from a pod and from
//! the host, by DNS name from a pod (`web`, `web.default`, the full name), spreads requests
//! over its pods, follows their readiness, answers on a node port, and loses no request
//! while the Deployment rolls out a new version; a client on another host (a network namespace)
//! keeps its address through a node port under `externalTrafficPolicy: Local`. Bad Services
//! are refused with 422.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_e2e::netns::Outside;
use corral_e2e::serve::Serve;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: main
        image: busybox:test
        env:
        - {name: VERSION, value: v1}
        ports:
        - {name: http, containerPort: 8080}
        # Keeps serving a moment after TERM, as a preStop sleep does, while the proxy takes
        # the pod out of the service.
        command: ["sh", "-c", "mkdir -p /www && echo \"$VERSION $HOSTNAME\" > /www/index.html && httpd -f -p 8080 -h /www & pid=$!; trap 'sleep 2; kill $pid; exit 0' TERM; wait $pid"]
        readinessProbe:
          httpGet: {path: /index.html, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
"#;

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One HTTP GET of `/index.html` at `addr`: the body.
fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(3)))?;
    c.write_all(b"GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n")?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.trim().to_string())
        }
        _ => Err(std::io::Error::other(format!("bad answer: {out:?}"))),
    }
}

fn ready_endpoints(s: &Serve) -> usize {
    let ep = s.json(&["get", "endpoints", "web"]);
    ep["subsets"]
        .as_array()
        .map(|ss| {
            ss.iter()
                .map(|s| s["addresses"].as_array().map(Vec::len).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_service_answers_by_vip_name_and_node_port_and_a_rollout_loses_nothing() {
    let Some(s) =
        Serve::start("a_service_answers_by_vip_name_and_node_port_and_a_rollout_loses_nothing")
    else {
        return;
    };
    s.apply(APP, &[]);
    let o = s.kubectl(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.wait_ready("default", "client");
    let svc = s.json(&["get", "service", "web"]);
    let vip = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
    assert!(
        vip.starts_with("10.43."),
        "cluster IP from the service range: {svc}"
    );
    let table = s.ok(&["get", "svc", "web"]);
    assert!(
        table.contains("ClusterIP") && table.contains(&vip) && table.contains("80/TCP"),
        "{table}"
    );
    wait_for("3 ready endpoints", Duration::from_secs(30), || {
        ready_endpoints(&s) == 3
    });
    let slices = s.json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    let slice = &slices["items"][0];
    assert_eq!(
        slice["ports"][0]["port"], 8080,
        "named target port resolved: {slice}"
    );
    assert_eq!(slice["endpoints"].as_array().map(Vec::len), Some(3));

    // From a pod: by the VIP and by each DNS name; requests spread over the pods. (No `-T`:
    // busybox-static's wget crashes with it.)
    for target in [
        vip.as_str(),
        "web",
        "web.default",
        "web.default.svc.cluster.local",
    ] {
        let url = format!("http://{target}/index.html");
        let out = s.ok(&["exec", "client", "--", "wget", "-qO-", &url]);
        assert!(out.starts_with("v1 web-"), "{target}: {out}");
    }
    // An ExternalName Service: its name is a DNS alias of another name (here the Service
    // above, so no resolver outside this machine is needed), followed to the address.
    s.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: alias\nspec:\n  type: ExternalName\n  externalName: web.default.svc.cluster.local\n",
        &[],
    );
    let table = s.ok(&["get", "svc", "alias"]);
    assert!(
        table.contains("ExternalName") && table.contains("web.default.svc.cluster.local"),
        "{table}"
    );
    let through_alias = || {
        let o = s.kubectl(&[
            "exec",
            "client",
            "--",
            "wget",
            "-qO-",
            "http://alias/index.html",
        ]);
        String::from_utf8_lossy(&o.stdout).starts_with("v1 web-")
    };
    wait_for(
        "an answer through the alias",
        Duration::from_secs(20),
        through_alias,
    );
    let lookup = s.ok(&[
        "exec",
        "client",
        "--",
        "nslookup",
        "alias.default.svc.cluster.local",
    ]);
    assert!(
        lookup.contains("web.default.svc.cluster.local") && lookup.contains(&vip),
        "the CNAME and the target's address: {lookup}"
    );
    s.ok(&["delete", "svc", "alias"]);
    wait_for("the alias gone from DNS", Duration::from_secs(20), || {
        !through_alias()
    });

    let many = s.ok(&[
        "exec",
        "client",
        "--",
        "sh",
        "-c",
        &format!("for i in $(seq 30); do wget -qO- http://{vip}/index.html; done"),
    ]);
    let hosts: std::collections::HashSet<&str> = many.lines().collect();
    assert!(hosts.len() >= 2, "30 requests reached one pod only: {many}");

    // From a container that `corral run` starts on the same network.
    let url = format!("http://{vip}/index.html");
    let out = s.world.ok(&[
        "run",
        "--rm",
        "--network",
        &s.network,
        "busybox:test",
        "wget",
        "-qO-",
        &url,
    ]);
    assert!(out.starts_with("v1 web-"), "from corral run: {out}");

    // From the host, through the VIP.
    let addr: SocketAddr = format!("{vip}:80").parse().unwrap();
    assert!(get(addr).unwrap().starts_with("v1 "));

    // A NodePort Service answers on the node's loopback.
    s.ok(&[
        "expose",
        "deployment",
        "web",
        "--name=web-np",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    ]);
    let np = s.json(&["get", "service", "web-np"]);
    let port = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap_or(0);
    assert!((30000..=32767).contains(&port), "{np}");
    let naddr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the node port", Duration::from_secs(20), || {
        get(naddr).is_ok()
    });

    // A rolling update while a client sends requests through the VIP: none fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = {
        let (stop, sent, failed, errors) =
            (stop.clone(), sent.clone(), failed.clone(), errors.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                sent.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = get(addr) {
                    failed.fetch_add(1, Ordering::SeqCst);
                    errors.lock().unwrap().push(e.to_string());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    s.ok(&["set", "env", "deployment/web", "VERSION=v2"]);
    let o = s.kubectl(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for("only v2 answers", Duration::from_secs(60), || {
        (0..10).all(|_| get(addr).is_ok_and(|b| b.starts_with("v2 ")))
    });
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("rolling update through the VIP: {sent} requests, {failed} failed");
    assert!(sent > 50, "the client sent {sent} requests only");
    assert_eq!(
        failed,
        0,
        "requests failed during the rollout: {:?}",
        errors.lock().unwrap()
    );

    // Readiness moves a pod out: scaled to zero, the VIP refuses at once (no timeout).
    s.ok(&["scale", "deployment/web", "--replicas=0"]);
    wait_for("no endpoints", Duration::from_secs(60), || {
        ready_endpoints(&s) == 0
    });
    wait_for("a prompt refusal", Duration::from_secs(20), || {
        let t = Instant::now();
        get(addr).is_err() && t.elapsed() < Duration::from_secs(1)
    });

    s.ok(&["delete", "service", "web", "web-np"]);
    s.ok(&["delete", "deployment", "web"]);
}

#[test]
fn bad_services_are_refused() {
    let Some(s) = Serve::start("bad_services_are_refused") else {
        return;
    };
    let cases: &[(&str, &str)] = &[
        (
            "spec:\n  ports:\n  - {port: 80}\n  - {port: 81}\n",
            "spec.ports[0].name: Required value",
        ),
        (
            "spec:\n  ports:\n  - {name: a, port: 80}\n  - {name: b, port: 80}\n",
            "Duplicate value",
        ),
        (
            "spec:\n  type: NodePort\n  ports:\n  - {port: 80, nodePort: 80}\n",
            "The range of valid ports is 30000-32767",
        ),
        (
            "spec:\n  clusterIP: 192.168.1.1\n  ports:\n  - {port: 80}\n",
            "not in the valid range",
        ),
        (
            "spec:\n  type: Magic\n  ports:\n  - {port: 80}\n",
            "Unsupported value: \"Magic\"",
        ),
        (
            "spec:\n  type: ExternalName\n  externalName: Not_A.Name\n",
            "spec.externalName: Invalid value",
        ),
    ];
    for (spec, want) in cases {
        let yaml = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n{spec}");
        let o = s.kubectl_in(&["apply", "-f", "-"], &yaml);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{spec}: {err}");
    }
    // A node port taken by another Service.
    s.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: first\nspec:\n  type: NodePort\n  ports:\n  - {port: 80, nodePort: 31234}\n", &[]);
    let o = s.kubectl_in(&["apply", "-f", "-"], "apiVersion: v1\nkind: Service\nmetadata:\n  name: second\nspec:\n  type: NodePort\n  ports:\n  - {port: 80, nodePort: 31234}\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("provided port is already allocated"),
        "{err}"
    );
    // The cluster IP may not change.
    let ip = s.json(&["get", "svc", "first"])["spec"]["clusterIP"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let o = s.kubectl(&[
        "patch",
        "svc",
        "first",
        "--type=merge",
        "-p",
        r#"{"spec":{"clusterIP":"10.43.99.99","clusterIPs":["10.43.99.99"]}}"#,
    ]);
    assert!(!o.status.success(), "the cluster IP changed");
    assert_eq!(
        s.json(&["get", "svc", "first"])["spec"]["clusterIP"].as_str(),
        Some(ip.as_str())
    );
    assert!(
        !s.kubectl(&["get", "svc", "bad"]).status.success(),
        "a refused Service was stored"
    );
    s.ok(&["delete", "svc", "first"]);
}

#[test]
fn a_load_balancer_service_answers_on_the_nodes_address() {
    let Some(s) = Serve::start("a_load_balancer_service_answers_on_the_nodes_address") else {
        return;
    };
    s.apply(APP, &[]);
    let o = s.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // As a user exposes it.
    s.ok(&[
        "expose",
        "deployment",
        "web",
        "--type=LoadBalancer",
        "--name=web-lb",
        &format!("--port={port}"),
        "--target-port=8080",
    ]);
    let node_ip = s.json(&["get", "nodes"])["items"][0]["status"]["addresses"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(
        "the load balancer's address",
        Duration::from_secs(60),
        || {
            s.json(&["get", "svc", "web-lb"])["status"]["loadBalancer"]["ingress"][0]["ip"]
                == node_ip.as_str()
        },
    );
    let table = s.ok(&["get", "svc", "web-lb"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web-lb ") && l.contains(&node_ip)),
        "{table}"
    );
    let addr: SocketAddr = format!("{node_ip}:{port}").parse().unwrap();
    let mut body = String::new();
    wait_for(
        "an answer on the node's address",
        Duration::from_secs(60),
        || match get(addr) {
            Ok(b) => {
                body = b;
                true
            }
            Err(_) => false,
        },
    );
    assert!(body.contains("v1 web-"), "{body}");
    // A container that `corral run` started on a corral network reaches the service's
    // virtual IP too.
    let vip = s.json(&["get", "svc", "web-lb"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let image = s.world.busybox_image();
    let got = s.world.ok(&[
        "run",
        "--rm",
        "--network",
        &s.network,
        image,
        "wget",
        "-qO-",
        &format!("http://{vip}:{port}/index.html"),
    ]);
    assert!(got.contains("v1 web-"), "{got}");
    // A second LoadBalancer on the same port stays pending.
    s.ok(&[
        "expose",
        "deployment",
        "web",
        "--type=LoadBalancer",
        "--name=web-lb2",
        &format!("--port={port}"),
        "--target-port=8080",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    let table = s.ok(&["get", "svc", "web-lb2"]);
    assert!(table.contains("<pending>"), "{table}");
    // Gone: the port no longer answers.
    s.ok(&["delete", "svc", "web-lb", "web-lb2"]);
    wait_for("the port to close", Duration::from_secs(60), || {
        get(addr).is_err()
    });
    s.ok(&["delete", "deployment", "web"]);
}

/// A pod that answers `/cgi-bin/ip` with the address its client came from, behind a node port
/// with `externalTrafficPolicy: Local`.
const WHOAMI: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: whoami
  labels: {app: whoami}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www"]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: whoami
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: whoami}
  ports:
  - {port: 80, targetPort: 8080}
"#;

#[test]
fn a_local_node_port_keeps_the_clients_address() {
    let Some(s) = Serve::start("a_local_node_port_keeps_the_clients_address") else {
        return;
    };
    let outside = Outside::new();
    s.apply(WHOAMI, &[]);
    s.wait_ready("default", "whoami");
    let port = s.json(&["get", "svc", "whoami"])["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap_or(0);
    let url = format!("http://{}:{port}/cgi-bin/ip", outside.host_addr);
    let client = outside.peer_addr.to_string();
    // busybox httpd gives REMOTE_ADDR as "[::ffff:a.b.c.d]".
    let address = |body: &str| {
        body.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_start_matches("::ffff:")
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = outside.fetch(&url).unwrap_or_else(|e| e);
        if address(&seen) == client {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pod saw {seen:?}, not the client's {client}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut seen = String::new();
    // Cluster (the default): masqueraded to this node's address on the pods' network.
    s.ok(&[
        "patch",
        "svc",
        "whoami",
        "--type=merge",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Cluster"}}"#,
    ]);
    wait_for("a masqueraded address", Duration::from_secs(60), || {
        seen = address(&outside.fetch(&url).unwrap_or_default());
        seen != client && seen.parse::<std::net::Ipv4Addr>().is_ok()
    });
    s.ok(&["delete", "svc", "whoami"]);
    s.ok(&["delete", "pod", "whoami", "--wait=true", "--timeout=60s"]);
}
