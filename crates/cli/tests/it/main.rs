//! The `ferry` command's integration tests, one test binary (`cargo test -p ferry-cli --test it`):
//! each file is a module named for what it tests (`cargo test -p ferry-cli --test it netfaults::`
//! runs one), and all of them share `common` (the real binary, a real server, a faulty proxy).
//! One binary links the product once instead of once a file.

mod common;

mod bad_input;
mod cache;
mod chunk_reuse;
mod crash;
mod daemon;
mod daemon_unattended;
mod dashboard;
mod dashboard_browser;
mod deadlines;
mod delta_update;
mod doctor;
mod doctor_space;
mod entitlements;
mod event_reports;
mod fsm_coverage;
mod full_update;
mod health_watch;
mod http2;
mod local_faults;
mod netfaults;
mod personalize;
mod postgres_leader;
mod postgres_replicas;
mod postgres_s3_demo;
mod postgres_update;
mod powercut;
mod progress;
mod rollouts;
mod s3_store;
mod seal_boot;
mod security;
mod signed_catalog;
mod slow_clients;
mod untrusted_cache;
