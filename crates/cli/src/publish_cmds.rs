//! `ferry publish`: a system image in, a signed release out.

use std::process::ExitCode;

use ferry_server::{DataDir, PublishRequest};

use crate::args::PublishArgs;
use crate::failure::Failure;
use crate::render;

pub async fn publish(a: PublishArgs) -> Result<ExitCode, Failure> {
    let json = a.json;
    let data = DataDir::open_with(&a.data, a.database.as_deref(), a.store.as_deref())
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    let request = PublishRequest {
        image: a.image,
        version: a.version,
        class: a.class,
        audiences: a.audiences,
        offline_keys: a.keys,
        build_id: a.build,
        level: a.level,
        delta_from: a.delta_from,
        chunks: !a.no_chunks,
    };
    let row = ferry_server::publish(&data, request)
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    let release = row.to_api();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&release).unwrap_or_default()
        );
    } else {
        println!(
            "published {} {} ({}): image {}, download {} ({:.1}%)",
            release.class,
            release.version,
            release.build_id,
            render::bytes(release.image_size),
            render::bytes(release.payload.size),
            100.0 * release.payload.size as f64 / release.image_size.max(1) as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}
