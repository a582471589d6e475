//! Two `ferry server` replicas on one PostgreSQL database (and one data directory for the
//! catalog, keys and artifacts): devices personalize against both, alternating addresses
//! as a load balancer would; one replica is killed with SIGKILL in the middle, and every
//! device still gets every ticket with nothing but client retries on the other address
//! (each attempt with a fresh nonce, as the agent does). No nonce is signed twice.
//! Skipped loudly when PostgreSQL is not installed (failed in CI).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

const DEVICES: usize = 4;
const TICKETS_PER_DEVICE: usize = 20;

/// One enrolled device's request material: identity, credential, the offered build and
/// its components (from the ticket of its own first install).
struct Requester {
    identity: serde_json::Value,
    credential: String,
}

fn requester(device: &Path) -> Requester {
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(device.join("identity.json")).unwrap()).unwrap();
    let credential = std::fs::read_to_string(device.join("trust/credential")).unwrap();
    Requester {
        identity,
        credential: credential.trim().to_owned(),
    }
}

#[test]
fn a_replica_killed_mid_personalization_costs_only_client_retries() {
    let Some(pg) = postgres::Postgres::start() else {
        return;
    };
    let url = pg.database();
    use_database(url.clone());
    let mut f = fleet(2, |s| s.url());
    // The first device installs once: its ticket names the build and components a
    // request for 2.0 carries.
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    let ticket: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.device.join("boot/ticket-b.json")).unwrap())
            .unwrap();
    let build_id = ticket["ticket"]["build_id"].clone();
    let components = ticket["ticket"]["components"].clone();
    let mut devices = vec![requester(&f.device)];
    for n in 1..DEVICES {
        devices.push(requester(&f.another_device(&format!("device-{n}"))));
    }
    // The second replica: the same data directory (CA, certificate, keys, catalog) and
    // database, another port.
    let replica = Server::start(&f.root.join("server"));
    let addresses = [f.server.addr, replica.addr];
    let ca = std::fs::read_to_string(f.server.ca()).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let signed = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let (config, _) = ferry_tls::client_config_pinned(&ca).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let results = runtime.block_on(async {
        let mut tasks = Vec::new();
        for (d, device) in devices.into_iter().enumerate() {
            let (client, signed, retries) = (client.clone(), signed.clone(), retries.clone());
            let (build_id, components) = (build_id.clone(), components.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..TICKETS_PER_DEVICE {
                    // Alternate replicas per request; on a transport failure (the replica
                    // is gone) try the other one, with a fresh nonce each attempt.
                    let mut pick = (d + i) % 2;
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        let nonce = ferry_personalize::Nonce::random();
                        let body = serde_json::json!({
                            "identity": device.identity,
                            "nonce": nonce,
                            "build_id": build_id,
                            "components": components,
                            "device_time": chrono::Utc::now(),
                        });
                        let sent = client
                            .post(format!("https://{}/v1/personalize", addresses[pick]))
                            .bearer_auth(&device.credential)
                            .json(&body)
                            .send()
                            .await;
                        match sent {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let answer: serde_json::Value =
                                    response.json().await.unwrap_or_default();
                                if status != 200 {
                                    return Err(format!(
                                        "device {d} request {i}: {status} {answer}"
                                    ));
                                }
                                let expected = nonce.sha256().to_string();
                                if answer["ticket"]["nonce_sha256"] != expected.as_str() {
                                    return Err(format!("a ticket for another nonce: {answer}"));
                                }
                                signed.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Err(e) if attempts < 4 => {
                                retries.fetch_add(1, Ordering::SeqCst);
                                eprintln!("device {d} request {i}: {e}; retrying elsewhere");
                                pick = 1 - pick;
                            }
                            Err(e) => return Err(format!("device {d} request {i}: {e}")),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(())
            }));
        }
        // The first replica dies (SIGKILL) once a third of the tickets are signed.
        while signed.load(Ordering::SeqCst) < DEVICES * TICKETS_PER_DEVICE / 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        f.server.kill();
        let killed_after = signed.load(Ordering::SeqCst);
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        (killed_after, results)
    });
    let (killed_after, results) = results;
    for result in &results {
        assert!(result.is_ok(), "{result:?}");
    }
    let total = DEVICES * TICKETS_PER_DEVICE;
    assert_eq!(signed.load(Ordering::SeqCst), total);
    assert!(
        killed_after < total,
        "the replica was killed while devices were still asking"
    );
    assert!(
        retries.load(Ordering::SeqCst) >= 1,
        "requests reached the killed replica and were retried"
    );
    eprintln!(
        "{total} tickets in {:?}, replica killed after {killed_after}, {} retries",
        started.elapsed(),
        retries.load(Ordering::SeqCst)
    );
    // Every ticket spent its own nonce, in the one database: the install's plus these.
    let nonces = runtime.block_on(async {
        let db = ferry_server::db::Db::connect_postgres(&url, 2)
            .await
            .unwrap();
        db.count_nonces().await.unwrap()
    });
    // At least one per ticket; at most one more per retry (a request the killed replica
    // committed but never answered).
    let most = total + 1 + retries.load(Ordering::SeqCst);
    assert!(
        (total + 1) as i64 <= nonces && nonces <= most as i64,
        "{nonces} nonces for {total} tickets and {} retries",
        retries.load(Ordering::SeqCst)
    );
    drop(replica);
}
